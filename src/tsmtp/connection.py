"""What plugins see of one client connection."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from typing_extensions import override

from .log import LogMethods
from .notes import Notes
from .results import Results

if TYPE_CHECKING:
    from .config import ServerConfig
    from .dns import Resolver
    from .transaction import Transaction


@dataclass(slots=True)
class Peer:
    """One end of a connection. ``host`` is the reverse-DNS name once ``lookup_rdns`` gave one."""

    ip: str
    port: int
    host: str | None = None

    @override
    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class Hello:
    """What the client said in HELO or EHLO."""

    verb: Literal["HELO", "EHLO"]
    host: str


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """The negotiated TLS parameters of a connection."""

    version: str
    cipher: str
    bits: int | None = None


class ServerContext:
    """Process-wide state shared by every plugin: ``notes``, the hostname and the server config."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.notes = Notes()
        self._resolver: Resolver | None = None

    @property
    def resolver(self) -> Resolver:
        """The shared DNS resolver (``[dns]`` in smtp.toml)."""
        if self._resolver is None:
            from .dns import Resolver

            self._resolver = Resolver(self.config.dns)
        return self._resolver

    @property
    def hostname(self) -> str:
        return self.config.hostname


_ID_PREFIX = secrets.token_hex(3)
_ids = itertools.count(1)


def new_id() -> str:
    """A connection id, unique across processes and restarts (random prefix, then a counter)."""
    return f"{_ID_PREFIX}{next(_ids):06x}"


class Connection(LogMethods):
    """One SMTP client connection.

    ``relaying`` set by a plugin lets recipients through that no ``rcpt`` hook accepted and sends
    the message to ``queue_outbound``. ``notes`` live as long as the connection; the current
    transaction, if any, is ``transaction``.
    """

    __slots__ = (
        "authenticated_user",
        "closing",
        "hello",
        "local",
        "notes",
        "relaying",
        "remote",
        "results",
        "server",
        "tls",
        "transaction",
        "transaction_count",
        "uuid",
    )

    def __init__(
        self, server: ServerContext, remote: Peer, local: Peer, *, uuid: str | None = None
    ) -> None:
        self.uuid = uuid or new_id()
        self.server = server
        self.remote = remote
        self.local = local
        self.notes = Notes()
        #: What plugins found about this client (see :class:`~tsmtp.Results`).
        self.results = Results()
        self.hello: Hello | None = None
        self.relaying = False
        self.tls: TLSInfo | None = None
        self.authenticated_user: str | None = None
        self.transaction: Transaction | None = None
        self.transaction_count = 0
        #: Set once the client is gone or a plugin asked to disconnect; only the hooks that must
        #: always run (``disconnect``, ``reset_transaction``) run after this.
        self.closing = False

    @property
    def log_id(self) -> str:
        if self.transaction is not None:
            return self.transaction.uuid
        return self.uuid

    @override
    def __repr__(self) -> str:
        return f"<Connection {self.uuid} from {self.remote}>"
