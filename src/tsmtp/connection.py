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


@dataclass(frozen=True, slots=True)
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
    """One SMTP client connection, as plugins see it.

    Plugins may write ``relaying`` (set, it lets recipients through that no ``rcpt`` hook
    accepted and sends the message to ``queue_outbound``), and fill ``notes`` and ``results``;
    the client address is changed with :meth:`set_remote` (XCLIENT-style plugins). Everything
    else is the session's own bookkeeping, read-only here: the session keeps it in the
    underscored fields.
    """

    __slots__ = (
        "_authenticated_user",
        "_closing",
        "_hello",
        "_local",
        "_notes",
        "_remote",
        "_results",
        "_server",
        "_tls",
        "_transaction",
        "_transaction_count",
        "_uuid",
        "relaying",
    )

    def __init__(
        self, server: ServerContext, remote: Peer, local: Peer, *, uuid: str | None = None
    ) -> None:
        self._uuid = uuid or new_id()
        self._server = server
        self._remote = remote
        self._local = local
        self._notes = Notes()
        self._results = Results()
        self._hello: Hello | None = None
        self.relaying = False
        self._tls: TLSInfo | None = None
        self._authenticated_user: str | None = None
        self._transaction: Transaction | None = None
        self._transaction_count = 0
        self._closing = False

    @property
    def uuid(self) -> str:
        """This connection's id; a transaction's is ``<uuid>.<n>``."""
        return self._uuid

    @property
    def server(self) -> ServerContext:
        return self._server

    @property
    def remote(self) -> Peer:
        """The client (after a PROXY header, the client the proxy saw), with its rDNS name."""
        return self._remote

    @property
    def local(self) -> Peer:
        """The address the client connected to."""
        return self._local

    def set_remote(self, peer: Peer) -> None:
        """Treat the client as ``peer`` from now on (as an XCLIENT-style plugin does). Limits
        the server already counted keep the address it admitted the connection by."""
        self.loginfo(f"client address changed from {self._remote} to {peer}")
        self._remote = peer

    @property
    def notes(self) -> Notes:
        """Plugin state that lives as long as the connection."""
        return self._notes

    @property
    def results(self) -> Results:
        """What plugins found about this client (see :class:`~tsmtp.Results`)."""
        return self._results

    @property
    def hello(self) -> Hello | None:
        """The accepted HELO or EHLO (None before one, and after STARTTLS)."""
        return self._hello

    @property
    def tls(self) -> TLSInfo | None:
        return self._tls

    @property
    def authenticated_user(self) -> str | None:
        """The AUTH identity, once AUTH succeeded."""
        return self._authenticated_user

    @property
    def transaction(self) -> Transaction | None:
        """The current transaction, from MAIL until its end (hooks that only run inside one
        also get it as a parameter)."""
        return self._transaction

    @property
    def transaction_count(self) -> int:
        """How many transactions this connection started."""
        return self._transaction_count

    @property
    def closing(self) -> bool:
        """Set once the client is gone or a plugin asked to disconnect; only the hooks that must
        always run (``disconnect``, ``reset_transaction``) run after this."""
        return self._closing

    @property
    def log_id(self) -> str:
        if self.transaction is not None:
            return self.transaction.uuid
        return self.uuid

    @override
    def __repr__(self) -> str:
        return f"<Connection {self.uuid} from {self.remote}>"
