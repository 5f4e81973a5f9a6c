"""The server's configuration (``smtp.toml``), the plugin list, and one loader with clear errors."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import msgspec

from .protocol.addresses import Address, parse_mailbox

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration problem, with the file, the key and what was expected."""


class _Base(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    pass


_HOST_PORT = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]]*)):(?P<port>[0-9]{1,5})\Z"
)


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


#: The settings of a listener that ``--listen`` takes after the address, in this order.
LISTENER_SETTINGS = ("tls", "auth", "require_auth", "proxy_protocol")
_LISTENER_TYPES = typing.get_type_hints(Listener)
_YES, _NO = ("yes", "true", "on", "1"), ("no", "false", "off", "0")


def _setting_text(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _setting_values(key: str) -> str:
    if _LISTENER_TYPES[key] is bool:
        return "yes|no"
    return "|".join(typing.get_args(_LISTENER_TYPES[key]))


def _parse_setting(text: str, key: str, value: str | None) -> object:
    if _LISTENER_TYPES[key] is bool:
        if value is None or value.lower() in _YES:
            return True
        if value.lower() in _NO:
            return False
    elif value in typing.get_args(_LISTENER_TYPES[key]):
        return value
    got = "" if value is None else f", got {value!r}"
    raise ValueError(f"{text!r}: {key} must be {key}={_setting_values(key)}{got}")


def listener_override(text: str, configured: Sequence[Listener], source: str) -> Listener:
    """The listener that ``--listen text`` asks for: ``HOST:PORT[,SETTING...]``.

    A SETTING is ``tls=...``, ``auth=...``, ``require_auth[=yes|no]`` or
    ``proxy_protocol[=yes|no]``. A setting not given is taken from the ``configured`` listeners
    (``source`` says where they come from) when they all agree on it, so that moving a listener
    to another address never lowers its security; where they differ it must be given.
    Raises ValueError with a one-line reason.
    """
    address, *items = text.split(",")
    try:
        parse_host_port(address)
    except ValueError:
        raise ValueError(
            "expected HOST:PORT[,SETTING...] such as 127.0.0.1:2525 or "
            f"[::1]:587,tls=required,require_auth; got {text!r}"
        ) from None
    given: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if key not in LISTENER_SETTINGS:
            raise ValueError(
                f"{text!r}: unknown setting {key!r}; the settings are "
                + ", ".join(f"{k}={_setting_values(k)}" for k in LISTENER_SETTINGS)
            )
        if key in given:
            raise ValueError(f"{text!r}: {key} is given twice")
        given[key] = _parse_setting(text, key, value if sep else None)
    unclear: dict[str, list[object]] = {}
    for key in LISTENER_SETTINGS:
        values = list(dict.fromkeys(getattr(listener, key) for listener in configured))
        if key in given or not values:
            continue
        if len(values) == 1:
            given[key] = values[0]
        else:
            unclear[key] = values
    if unclear:
        differ = " and ".join(
            f"{key} ({', '.join(_setting_text(v) for v in values)})"
            for key, values in unclear.items()
        )
        example = ",".join(f"{key}={_setting_text(v[0])}" for key, v in unclear.items())
        raise ValueError(
            f"{text!r}: the {len(configured)} listeners of {source} differ in {differ}, "
            f"so which this address takes is unclear; add them, such as {address},{example}"
        )
    return msgspec.structs.replace(Listener(address=address), **given)


PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]


class Limits(_Base, frozen=True):
    """Limits on what one client may do. Times are seconds."""

    #: Open connections in all; an idle one costs about 8 KiB, so 10 000 is about 80 MB. When
    #: the server is full, the connection idle longest outside a transaction makes room.
    max_connections: PositiveInt = 10000
    #: From this fraction of max_connections on, the server is stressed: connections waiting
    #: for a command get stress_command_timeout, and their first error ends them.
    stress_threshold: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.8
    stress_command_timeout: Seconds = 10.0
    max_recipients: PositiveInt = 100
    max_message_size: PositiveInt = 25 * 1024 * 1024
    #: Replies of 4xx or 5xx to one client (refused recipients included) before 421 and close.
    max_errors: PositiveInt = 20
    #: Refused RCPT commands on one connection before 421 and close (address probing).
    max_refused_recipients: PositiveInt = 10
    max_connections_per_ip: PositiveInt = 50
    max_connection_rate_per_ip: Annotated[int, msgspec.Meta(ge=0)] = 0
    #: Clients in these networks are not subject to the per-address limits above.
    exempt_networks: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    #: IPv6 clients count as one address per prefix of this length for the per-address limits.
    ipv6_prefix: Annotated[int, msgspec.Meta(ge=1, le=128)] = 64
    command_timeout: Seconds = 300.0
    data_timeout: Seconds = 180.0
    data_total_timeout: Seconds = 600.0
    greeting_delay: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    max_auth_failures: PositiveInt = 3

    def __post_init__(self) -> None:
        for network in self.exempt_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"exempt_networks: {network!r} is not an IP network") from None


class DataSettings(_Base, frozen=True):
    """How message bodies are read and held."""

    bare_line_endings: Literal["reject", "normalize"] = "reject"
    max_line_length: Annotated[int, msgspec.Meta(ge=100)] = 1000
    spool_threshold: Annotated[int, msgspec.Meta(ge=0)] = 1024 * 1024
    spool_dir: str | None = None
    #: Transaction.message() refuses to parse a larger message whole (it would take several
    #: times its size in memory); Transaction.parts() walks messages of any size.
    max_parse_size: PositiveInt = 10 * 1024 * 1024


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

    def __post_init__(self) -> None:
        for name in self.names:
            try:
                check_hostname(name.removeprefix("*."))
            except ValueError as exc:
                raise ValueError(f"names: {exc}") from None


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

    def __post_init__(self) -> None:
        for server in self.nameservers:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise ValueError(f"nameservers: {server!r} is not an IP address") from None


_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")


def check_hostname(name: str) -> None:
    """Refuse what is not a domain name or an address literal (RFC 5321 4.1.2, 4.1.3)."""
    if name.startswith("[") and name.endswith("]"):
        inner = name[1:-1]
        try:
            if inner[:5].lower() == "ipv6:":
                ipaddress.IPv6Address(inner[5:])
            else:
                ipaddress.IPv4Address(inner)
        except ValueError:
            raise ValueError(
                f"{name!r} is not an address literal ([192.0.2.1] or [IPv6:2001:db8::1])"
            ) from None
        return
    if not name.isascii() and name.isprintable() and " " not in name:
        raise ValueError(f"{name!r}: write an internationalized name in its xn-- (A-label) form")
    labels = name.split(".")
    if len(name) > 255 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(
            f"{name!r} is not a domain name (labels of letters, digits and inner hyphens, "
            "at most 63 long, joined by dots) nor an address literal such as [192.0.2.1]"
        )


def check_reply_text(text: str) -> None:
    """Refuse what may not appear in the text of an SMTP reply: only printable ASCII and tabs
    (RFC 5321 4.2), so that no setting can end a reply line or start another."""
    if not all(char == "\t" or " " <= char <= "~" for char in text):
        raise ValueError(f"{text!r} may hold only printable ASCII and tabs")


def _default_hostname() -> str:
    name = socket.getfqdn()
    try:
        check_hostname(name)
    except ValueError:
        return "localhost"
    return name


def check_mailbox(text: str) -> None:
    """Refuse anything but a plain ``local@domain`` mailbox."""
    if parse_mailbox(text) is None or "@" not in text:
        raise ValueError(f"expected a mailbox such as postmaster@example.com, got {text!r}")


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
    #: Where mail to the bare ``<Postmaster>`` goes (RFC 5321 4.5.1); by default postmaster at
    #: the first domain of ``host_list``, or at ``hostname`` without one.
    postmaster: str | None = None
    #: Advertise DSN (RFC 3461) and accept NOTIFY, ORCPT, RET and ENVID.
    dsn: bool = False
    log_level: Literal[
        "PROTOCOL", "DEBUG", "INFO", "NOTICE", "WARN", "ERROR", "CRIT", "ALERT", "EMERG"
    ] = "INFO"
    shutdown_grace: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    #: ``tsmtp run`` writes its process id here (relative to the directory it runs in, like
    #: queue.maildir's path) and ``tsmtp reload`` reads it; ``""`` for none.
    pid_file: str = "var/tsmtp.pid"
    #: Worker processes sharing the listening sockets; "auto" is one per CPU.
    nodes: Annotated[int, msgspec.Meta(ge=1, le=256)] | Literal["auto"] = 1

    def __post_init__(self) -> None:
        # These are written into every greeting, reply and Received header.
        for key, check, value in (
            ("hostname", check_hostname, self.hostname),
            ("greeting", check_reply_text, self.greeting),
            ("postmaster", check_mailbox, self.postmaster),
        ):
            if value is not None:
                try:
                    check(value)
                except ValueError as exc:
                    raise ValueError(f"{key}: {exc}") from None

    @property
    def postmaster_address(self) -> Address:
        """Where mail to ``<Postmaster>`` goes: ``postmaster``, else postmaster@hostname."""
        mailbox = parse_mailbox(self.postmaster or f"postmaster@{self.hostname}")
        return mailbox or Address("postmaster", self.hostname)

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


def convert_settings(data: Mapping[str, object], type: type[T], where: str) -> T:
    """``data`` (settings given in code) checked into ``type``, with errors like
    :func:`decode_toml`'s; ``where`` names what the settings are for."""
    try:
        return msgspec.convert(data, type=type)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {_where(exc)}") from None


def load_server_config(config_dir: Path) -> ServerConfig:
    if not config_dir.is_dir():
        raise ConfigError(f"{config_dir}: no such config directory")
    config = decode_toml(config_dir / "smtp.toml", ServerConfig)
    if config.postmaster is None:
        domains = read_list(config_dir / "host_list")
        if domains:
            postmaster = f"postmaster@{domains[0]}"
            try:
                config = msgspec.structs.replace(config, postmaster=postmaster)
            except ValueError as exc:
                raise ConfigError(f"{config_dir / 'host_list'}: {exc}") from None
    return config


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
