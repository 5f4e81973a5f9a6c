"""The server's configuration (``smtp.toml``), the plugin list, and one loader with clear errors."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import msgspec

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration problem, with the file, the key and what was expected."""


class _Base(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    pass


_HOST_PORT = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]]*)):(?P<port>\d{1,5})\Z")


def parse_host_port(text: str) -> tuple[str, int]:
    """``"127.0.0.1:25"``, ``"[::1]:25"`` or ``":25"`` (all addresses) into host and port."""
    match = _HOST_PORT.match(text)
    if match is None or not 0 <= int(match["port"]) <= 65535:
        raise ValueError(f"expected HOST:PORT (such as 127.0.0.1:2525 or [::1]:25), got {text!r}")
    return match["v6"] or match["host"] or "", int(match["port"])


class Listener(_Base, frozen=True):
    """One listening address and what it requires.

    ``tls``: ``offered`` (STARTTLS when a certificate is configured), ``required`` (STARTTLS
    before MAIL, else 530), ``implicit`` (TLS from the first byte, RFC 8314) or ``none``.
    ``auth``: when AUTH is offered: ``tls`` (only over TLS), ``always`` or ``never``.
    ``require_auth``: MAIL needs a successful AUTH first (submission). ``proxy_protocol``:
    every connection starts with a PROXY v1/v2 header from a trusted proxy.
    """

    address: str
    tls: Literal["none", "offered", "required", "implicit"] = "offered"
    auth: Literal["never", "tls", "always"] = "tls"
    require_auth: bool = False
    proxy_protocol: bool = False

    def __post_init__(self) -> None:
        parse_host_port(self.address)

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_host_port(self.address)


PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]


class Limits(_Base, frozen=True):
    """Limits on what one client may do. Times are seconds."""

    max_connections: PositiveInt = 1000
    max_recipients: PositiveInt = 100
    max_message_size: PositiveInt = 25 * 1024 * 1024
    max_errors: PositiveInt = 10
    max_connections_per_ip: PositiveInt = 50
    max_connection_rate_per_ip: Annotated[int, msgspec.Meta(ge=0)] = 0
    command_timeout: Seconds = 300.0
    data_timeout: Seconds = 180.0
    data_total_timeout: Seconds = 600.0
    greeting_delay: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    max_auth_failures: PositiveInt = 3


class DataSettings(_Base, frozen=True):
    """How message bodies are read and held."""

    bare_line_endings: Literal["reject", "normalize"] = "reject"
    max_line_length: Annotated[int, msgspec.Meta(ge=100)] = 1000
    spool_threshold: Annotated[int, msgspec.Meta(ge=0)] = 1024 * 1024
    spool_dir: str | None = None


class PluginSettings(_Base, frozen=True):
    """Where plugins come from and how long a hook may take."""

    timeout: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    search_path: list[str] = msgspec.field(default_factory=list)


class TLSCertificate(_Base, frozen=True):
    """A certificate file (PEM, chain included after the leaf) and its key, relative to the
    config directory."""

    cert: str
    key: str


class SNICertificate(TLSCertificate, frozen=True):
    #: Names this certificate answers for; ``*.example.com`` matches one label.
    names: list[str]


class TLSSettings(_Base, frozen=True):
    """The server certificate and TLS policy (``[tls]`` in smtp.toml)."""

    cert: str | None = None
    key: str | None = None
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    ciphers: str | None = None
    handshake_timeout: Seconds = 30.0
    sni: list[SNICertificate] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key must be given together")
        if self.sni and self.cert is None:
            raise ValueError("sni certificates need a default cert and key")


class AuthSettings(_Base, frozen=True):
    """SMTP AUTH (RFC 4954); the credentials are checked by ``auth`` hook plugins."""

    mechanisms: list[Literal["PLAIN", "LOGIN"]] = msgspec.field(
        default_factory=lambda: ["PLAIN", "LOGIN"]
    )
    #: An authenticated client may relay (its mail goes to queue_outbound).
    relay: bool = True


class ProxySettings(_Base, frozen=True):
    """Who may send PROXY protocol headers, and how long they have."""

    trusted: list[str] = msgspec.field(default_factory=list)
    timeout: Seconds = 10.0

    def __post_init__(self) -> None:
        for network in self.trusted:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"trusted: {network!r} is not an IP network") from None


class DNSSettings(_Base, frozen=True):
    """Where DNS lookups go; no nameservers means those of /etc/resolv.conf."""

    nameservers: list[str] = msgspec.field(default_factory=list)
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 53
    timeout: Seconds = 5.0


def _default_hostname() -> str:
    return socket.getfqdn() or "localhost"


class ServerConfig(_Base, frozen=True):
    """Everything in ``smtp.toml``."""

    hostname: str = msgspec.field(default_factory=_default_hostname)
    greeting: str | None = None
    listen: list[Listener] = msgspec.field(
        default_factory=lambda: [Listener(address="127.0.0.1:2525")]
    )
    limits: Limits = msgspec.field(default_factory=Limits)
    data: DataSettings = msgspec.field(default_factory=DataSettings)
    plugins: PluginSettings = msgspec.field(default_factory=PluginSettings)
    tls: TLSSettings = msgspec.field(default_factory=TLSSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    proxy: ProxySettings = msgspec.field(default_factory=ProxySettings)
    dns: DNSSettings = msgspec.field(default_factory=DNSSettings)
    #: Advertise DSN (RFC 3461) and accept NOTIFY, ORCPT, RET and ENVID.
    dsn: bool = False
    log_level: Literal[
        "PROTOCOL", "DEBUG", "INFO", "NOTICE", "WARN", "ERROR", "CRIT", "ALERT", "EMERG"
    ] = "INFO"
    shutdown_grace: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    #: Worker processes sharing the listening sockets; "auto" is one per CPU.
    nodes: Annotated[int, msgspec.Meta(ge=1, le=256)] | Literal["auto"] = 1

    @property
    def node_count(self) -> int:
        return (os.cpu_count() or 1) if self.nodes == "auto" else self.nodes


def _where(error: msgspec.ValidationError) -> str:
    text = str(error)
    message, sep, path = text.rpartition(" - at `$")
    if not sep:
        return text
    key = path.rstrip("`").lstrip(".")
    return f"{key or '(top level)'}: {message}"


def decode_toml(path: Path, type: type[T]) -> T:
    """Read ``path`` as TOML into ``type``; a missing file gives the defaults."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return msgspec.toml.decode(data, type=type)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {_where(exc)}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_server_config(config_dir: Path) -> ServerConfig:
    if not config_dir.is_dir():
        raise ConfigError(f"{config_dir}: no such config directory")
    return decode_toml(config_dir / "smtp.toml", ServerConfig)


def read_list(path: Path) -> list[str]:
    """A one-item-per-line file: blank lines and ``#`` comments skipped, items stripped."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    items = []
    for line in text.splitlines():
        item = line.split("#", 1)[0].strip()
        if item:
            items.append(item)
    return items
