"""The shape of every hook, as a :class:`typing.Protocol` per parameter list.

These type the handlers given to :meth:`Plugin.register_hook`; the ``hook_*`` methods of
:class:`~tsmtp.Plugin` have the same parameters.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from .connection import Connection, ServerContext
from .outbound import Bounce, Deferral, Delivery, OutboundMail
from .protocol import Address, MailParams, RcptParams
from .verdict import Outcome, Verdict


@dataclass(frozen=True, slots=True)
class Denial:
    """What the ``deny`` hook is told: which hook of which plugin refused, how and with what."""

    verdict: Verdict
    message: tuple[str, ...] | None
    plugin: str
    hook: str
    params: tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a client sent with AUTH: the mechanism, the user name and the password.

    ``authzid`` is the identity PLAIN lets a client ask to act as (usually empty).
    """

    mechanism: str
    username: str
    password: str = field(repr=False)
    authzid: str = ""


class ConnectionHook(Protocol):
    def __call__(self, connection: Connection, /) -> Awaitable[Outcome]: ...


class HelloHook(Protocol):
    def __call__(self, connection: Connection, hostname: str, /) -> Awaitable[Outcome]: ...


class CapabilitiesHook(Protocol):
    def __call__(
        self, connection: Connection, capabilities: list[str], /
    ) -> Awaitable[Outcome]: ...


class UnrecognizedCommandHook(Protocol):
    def __call__(
        self, connection: Connection, verb: str, argument: str, /
    ) -> Awaitable[Outcome]: ...


class VrfyHook(Protocol):
    def __call__(self, connection: Connection, argument: str, /) -> Awaitable[Outcome]: ...


class MailHook(Protocol):
    def __call__(
        self, connection: Connection, sender: Address, params: MailParams, /
    ) -> Awaitable[Outcome]: ...


class RcptHook(Protocol):
    def __call__(
        self, connection: Connection, recipient: Address, params: RcptParams, /
    ) -> Awaitable[Outcome]: ...


class RcptOkHook(Protocol):
    def __call__(self, connection: Connection, recipient: Address, /) -> Awaitable[Outcome]: ...


class QueueOkHook(Protocol):
    def __call__(self, connection: Connection, message: str, /) -> Awaitable[Outcome]: ...


class AuthHook(Protocol):
    def __call__(
        self, connection: Connection, credentials: Credentials, /
    ) -> Awaitable[Outcome]: ...


class DenyHook(Protocol):
    def __call__(self, connection: Connection, denial: Denial, /) -> Awaitable[Outcome]: ...


class ServerHook(Protocol):
    def __call__(self, server: ServerContext, /) -> Awaitable[Outcome]: ...


class GetMxHook(Protocol):
    def __call__(self, mail: OutboundMail, domain: str, /) -> Awaitable[Outcome]: ...


class SendEmailHook(Protocol):
    def __call__(self, mail: OutboundMail, /) -> Awaitable[Outcome]: ...


class DeferredHook(Protocol):
    def __call__(self, mail: OutboundMail, deferral: Deferral, /) -> Awaitable[Outcome]: ...


class BounceHook(Protocol):
    def __call__(self, mail: OutboundMail, bounce: Bounce, /) -> Awaitable[Outcome]: ...


class DeliveredHook(Protocol):
    def __call__(self, mail: OutboundMail, delivery: Delivery, /) -> Awaitable[Outcome]: ...


ConnectionHookName = Literal[
    "connect_init",
    "lookup_rdns",
    "connect",
    "disconnect",
    "quit",
    "noop",
    "rset",
    "data",
    "data_post",
    "max_data_exceeded",
    "queue",
    "queue_outbound",
    "reset_transaction",
    "pre_send_trans_email",
]

#: Hooks where every handler runs and the verdict never changes anything.
RUN_ALL = frozenset(
    {
        "connect_init",
        "disconnect",
        "capabilities",
        "queue_ok",
        "reset_transaction",
        "delivered",
        "init_master",
        "init_child",
    }
)
#: Hooks that still run once the connection is closing.
ALWAYS_RUN = frozenset({"disconnect", "reset_transaction"})
#: Hooks that run outside any connection; their first argument is not a Connection.
SERVER_HOOKS = frozenset(
    {"init_master", "init_child", "get_mx", "send_email", "deferred", "bounce", "delivered"}
)
