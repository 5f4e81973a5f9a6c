"""The :class:`Plugin` base class: one typed no-op method per hook, and ``register_hook``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

import msgspec
import trio
from typing_extensions import override

from .connection import Connection, ServerContext
from .hookargs import Credentials, Denial
from .log import LogMethods
from .outbound import Bounce, Deferral, Delivery, OutboundMail
from .protocol import Address, MailParams, RcptParams
from .transaction import Transaction
from .verdict import Outcome

#: A handler for a hook of the plugin's own (``register_custom_hook``).
CustomHook = Callable[[Connection, str, str], Awaitable[Outcome]]


class Registration(NamedTuple):
    """A handler added with ``register_hook``."""

    hook: str
    handler: Callable[..., Awaitable[Outcome]]
    priority: int


class PluginConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Base of every plugin's settings, read from ``config/<plugin name>.toml``.

    Subclass it and annotate ``config: YourConfig`` on the plugin class to get typed settings.
    ``timeout`` (seconds per hook call, ``0`` for none) overrides the server's plugin timeout.
    """

    timeout: float | None = msgspec.field(default=None)


class Plugin(LogMethods):
    """Base class of every plugin.

    Override the ``hook_<name>`` methods you need, each marked ``@override`` so that mypy checks
    the name and the signature. A hook returns a :class:`~tsmtp.Verdict`, a
    :class:`~tsmtp.Result` (``Verdict.DENY("text")``) or ``None`` for CONT. The loader sets
    ``name``, ``config``, ``config_dir`` and ``server`` before calling :meth:`register`.
    """

    name: str = ""
    config: PluginConfig
    config_dir: Path
    server: ServerContext

    @property
    @override
    def log_source(self) -> str:
        return self.name or type(self).__name__

    def register(self) -> None:
        """Called once after loading: add handlers here, ``hooks.rcpt.register(self, fn)``."""

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The plugin's background task: connection pools, timers, watchers live here.

        Override it (``@override``) only if the plugin needs one; a plugin without it is fine,
        and the server keeps no task for it. The server starts it with ``nursery.start`` before
        it opens its listeners: set up what hooks need, call ``task_status.started()``, then
        run until cancelled, which happens at shutdown once the connections have drained (or,
        after a reload, once the connections of the previous configuration have). An
        exception raised here stops the server (CRIT in the log, naming the plugin); returning
        after ``started()`` just ends the task.
        """

    def config_file(self, name: str) -> Path:
        """The path of a file in the config directory (``self.config_file("host_list")``)."""
        return self.config_dir / name

    # --- adding handlers ----------------------------------------------------------------------

    def add_handler(
        self, hook: str, handler: Callable[..., Awaitable[Outcome]], priority: int = 0
    ) -> None:
        """Untyped: use ``hooks.<name>.register(self, handler)``, which mypy checks."""
        if hook not in HOOK_NAMES:
            raise ValueError(f"unknown hook {hook!r}; use register_custom_hook for your own")
        if not -100 <= priority <= 100:
            raise ValueError(f"priority must be between -100 and 100, not {priority}")
        self.__dict__.setdefault("_registered_hooks", []).append(
            Registration(hook, handler, priority)
        )

    def register_custom_hook(self, hook: str, handler: CustomHook) -> None:
        """Add a handler for a hook of your own, run when an ``unrecognized_command`` handler
        returns ``Verdict.HOOK(value=hook)``; it receives ``(connection, verb, argument)``."""
        if hook in HOOK_NAMES:
            raise ValueError(f"{hook!r} is a standard hook; use register_hook")
        self.__dict__.setdefault("_registered_hooks", []).append(Registration(hook, handler, 0))

    # --- connection hooks ---------------------------------------------------------------------

    async def hook_connect_init(self, connection: Connection, /) -> Outcome:
        """At once on connect, before anything else; every plugin runs, verdict ignored."""

    async def hook_lookup_rdns(self, connection: Connection, /) -> Outcome:
        """Find the client's host name: return ``Verdict.OK(value="host.name")``."""

    async def hook_connect(self, connection: Connection, /) -> Outcome:
        """Decide whether to talk to this client (DENY answers 554, DENYSOFT 421)."""

    async def hook_capabilities(
        self, connection: Connection, capabilities: list[str], /
    ) -> Outcome:
        """Edit the EHLO keyword list in place (add, remove)."""

    async def hook_unrecognized_command(
        self, connection: Connection, verb: str, argument: str, /
    ) -> Outcome:
        """A command the core does not know. OK with a message replies 250 with it."""

    async def hook_disconnect(self, connection: Connection, /) -> Outcome:
        """The connection is over; always runs, for every plugin."""

    async def hook_helo(self, connection: Connection, hostname: str, /) -> Outcome:
        """HELO with the client's name."""

    async def hook_ehlo(self, connection: Connection, hostname: str, /) -> Outcome:
        """EHLO with the client's name."""

    async def hook_quit(self, connection: Connection, /) -> Outcome:
        """QUIT."""

    async def hook_vrfy(self, connection: Connection, argument: str, /) -> Outcome:
        """VRFY: OK answers 250, CONT the default 252."""

    async def hook_noop(self, connection: Connection, /) -> Outcome:
        """NOOP."""

    async def hook_rset(self, connection: Connection, /) -> Outcome:
        """RSET (always answered 250)."""

    async def hook_mail(
        self, connection: Connection, sender: Address, params: MailParams, /
    ) -> Outcome:
        """MAIL FROM; ``connection.transaction`` already exists."""

    async def hook_rcpt(
        self, connection: Connection, recipient: Address, params: RcptParams, /
    ) -> Outcome:
        """RCPT TO: some handler must say OK (or the connection be relaying) to accept it.

        ``Verdict.OK(value=address)`` or ``value=[addresses]`` accepts it and puts those in its
        place (aliases, expansion); the original is kept as ``Recipient.original``.
        """

    async def hook_rcpt_ok(self, connection: Connection, recipient: Address, /) -> Outcome:
        """A recipient was accepted by ``rcpt``; DENY here still refuses it."""

    async def hook_data(self, connection: Connection, transaction: Transaction, /) -> Outcome:
        """The DATA command, before the 354."""

    async def hook_data_post(self, connection: Connection, transaction: Transaction, /) -> Outcome:
        """The whole message is in ``transaction``; decide before it is queued."""

    async def hook_max_data_exceeded(
        self, connection: Connection, transaction: Transaction, /
    ) -> Outcome:
        """The message was larger than the size limit (it is refused with 552 by default)."""

    async def hook_queue(self, connection: Connection, transaction: Transaction, /) -> Outcome:
        """Store or forward the message; OK means it is safe and the client gets 250."""

    async def hook_queue_outbound(
        self, connection: Connection, transaction: Transaction, /
    ) -> Outcome:
        """Like ``queue``, for relayed mail (``connection.relaying``)."""

    async def hook_queue_ok(
        self, connection: Connection, transaction: Transaction, message: str, /
    ) -> Outcome:
        """The message was queued; ``message`` is the reply text. Verdict ignored."""

    async def hook_reset_transaction(
        self, connection: Connection, transaction: Transaction, /
    ) -> Outcome:
        """The transaction is about to be discarded; always runs."""

    async def hook_auth(self, connection: Connection, credentials: Credentials, /) -> Outcome:
        """AUTH: OK accepts the credentials (235), DENY refuses (535), DENYSOFT is 454."""

    async def hook_deny(self, connection: Connection, denial: Denial, /) -> Outcome:
        """Another hook refused; OK here turns the refusal into CONT."""

    async def hook_pre_send_trans_email(self, connection: Connection, /) -> Outcome:
        """A message generated by the server is about to be queued for delivery."""

    # --- server and outbound hooks ------------------------------------------------------------

    async def hook_init_master(self, server: ServerContext, /) -> Outcome:
        """Once, in the main process, before listening."""

    async def hook_init_child(self, server: ServerContext, /) -> Outcome:
        """In each worker process when running several nodes."""

    async def hook_get_mx(self, mail: OutboundMail, domain: str, /) -> Outcome:
        """Choose where to deliver: OK with ``value`` a MailExchanger or a list of them."""

    async def hook_send_email(self, mail: OutboundMail, /) -> Outcome:
        """About to attempt delivery; ``Verdict.DELAY(value=seconds)`` postpones it."""

    async def hook_deferred(self, mail: OutboundMail, deferral: Deferral, /) -> Outcome:
        """Delivery failed temporarily; OK drops the message, DENYSOFT(value=s) sets the delay."""

    async def hook_bounce(self, mail: OutboundMail, bounce: Bounce, /) -> Outcome:
        """Delivery failed permanently; OK suppresses the bounce message."""

    async def hook_delivered(self, mail: OutboundMail, delivery: Delivery, /) -> Outcome:
        """Delivered; verdict ignored."""


#: Every hook name, taken from the ``hook_*`` methods above.
HOOK_NAMES = frozenset(
    name.removeprefix("hook_") for name in vars(Plugin) if name.startswith("hook_")
)
