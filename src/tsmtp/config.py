"""The server's configuration (``smtp.toml``), the plugin list, and one loader with clear errors."""

from __future__ import annotations

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
    """One listening address."""

    address: str

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
    command_timeout: Seconds = 300.0
    data_timeout: Seconds = 180.0


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
    log_level: Literal[
        "PROTOCOL", "DEBUG", "INFO", "NOTICE", "WARN", "ERROR", "CRIT", "ALERT", "EMERG"
    ] = "INFO"
    shutdown_grace: Annotated[float, msgspec.Meta(ge=0)] = 30.0


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
