"""Type tests for the plugin API, checked by mypy (mypy.ini covers ``tests/``); never run.

``assert_type`` lines pin what the public API gives. Lines that must be refused carry a
``# type: ignore[<code>]``: ``warn_unused_ignores`` is on, so if mypy ever stops refusing one of
them, the ignore becomes unused and mypy fails.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import assert_type

import tsmtp
from tsmtp import (
    HOOK_NAMES,
    Address,
    Connection,
    Credentials,
    Denial,
    MailParams,
    NoteKey,
    Notes,
    Outcome,
    Plugin,
    PluginConfig,
    RcptParams,
    Result,
    ServerContext,
    Transaction,
    Verdict,
    hooks,
    override,
)
from tsmtp.runner import Decision, HookRunner
from tsmtp.testing import call_hook, make_connection

# --- verdicts and results -------------------------------------------------------------------

assert_type(Verdict.DENY("no such user"), Result)
assert_type(Verdict.DENYSOFT(["line one", "line two"]), Result)
assert_type(Verdict.DENY("policy", code=554), Result)
assert_type(Verdict.OK(value="host.example"), Result)
assert_type(Verdict.HOOK(value="auth"), Result)
assert_type(Verdict.DENY("x").message, tuple[str, ...] | None)
assert_type(Verdict.DENY("x").code, int | None)
assert_type(Verdict.DENY("x").verdict, Verdict)
assert_type(tsmtp.DENY, Verdict)
assert_type(tsmtp.OK.is_denial, bool)
assert_type(HOOK_NAMES, frozenset[str])

Verdict.DENY(code="550")  # type: ignore[arg-type]
Verdict.DENY(42)  # type: ignore[arg-type]

outcome_cont: Outcome = None
outcome_bare: Outcome = Verdict.OK
outcome_result: Outcome = Verdict.DENY("no")
outcome_bad: Outcome = "OK"  # type: ignore[assignment]

# --- notes ----------------------------------------------------------------------------------

COUNT = NoteKey("typing.count", int)
assert_type(COUNT, NoteKey[int])


def notes_are_typed(connection: Connection, notes: Notes) -> None:
    assert_type(notes[COUNT], int)
    assert_type(notes.find(COUNT), int | None)
    assert_type(notes["plain"], object)
    assert_type(connection.notes, Notes)
    assert_type(connection.server.notes, Notes)
    notes.set(COUNT, 3)
    notes["plain"] = "anything"
    notes[COUNT] = 3  # type: ignore[index]
    notes.set(COUNT, "three")  # type: ignore[misc]


# --- a correct plugin -----------------------------------------------------------------------


class LimitConfig(PluginConfig, kw_only=True, frozen=True):
    max_count: int = 10


class GoodPlugin(Plugin):
    config: LimitConfig

    @override
    def register(self) -> None:
        assert_type(self.config, LimitConfig)
        assert_type(self.config.timeout, float | None)
        assert_type(self.server, ServerContext)
        hooks.queue.register(self, self.queue_first)
        hooks.queue.register(self, self.queue_second)
        hooks.rcpt.register(self, self.check_rcpt)
        hooks.helo.register(self, self.check_hello)
        hooks.ehlo.register(self, self.check_hello)
        hooks.deny.register(self, self.on_deny)
        hooks.init_master.register(self, self.at_start)
        self.register_custom_hook("x-custom", self.custom)
        hooks.get_mx.register(self, self.custom)  # type: ignore[arg-type]
        hooks.auth.register(self, self.check_password)
        handler: Callable[[Connection, Address, RcptParams], Awaitable[Outcome]] = self.check_rcpt
        hooks.rcpt.register(self, handler, priority=-10)

    async def queue_first(self, connection: Connection, transaction: Transaction) -> Outcome:
        return None

    async def queue_second(self, connection: Connection, transaction: Transaction) -> Outcome:
        return Verdict.OK

    async def check_rcpt(
        self, connection: Connection, recipient: Address, params: RcptParams
    ) -> Outcome:
        return Verdict.CONT

    async def check_hello(self, connection: Connection, hostname: str) -> Outcome:
        return None

    async def on_deny(self, connection: Connection, denial: Denial) -> Outcome:
        assert_type(denial.verdict, Verdict)
        assert_type(denial.message, tuple[str, ...] | None)
        return None

    async def at_start(self, server: ServerContext) -> Outcome:
        return None

    async def custom(self, connection: Connection, verb: str, argument: str) -> Outcome:
        return Verdict.OK("done")

    async def check_password(self, connection: Connection, credentials: Credentials) -> Outcome:
        assert_type(credentials.username, str)
        assert_type(credentials.password, str)
        return Verdict.OK if credentials.password == "secret" else Verdict.DENY

    @override
    async def hook_mail(
        self, connection: Connection, sender: Address, params: MailParams
    ) -> Outcome:
        assert_type(connection.transaction, Transaction | None)
        assert_type(sender.is_null, bool)
        assert_type(params.size, int | None)
        return None

    @override
    async def hook_rcpt(
        self, connection: Connection, recipient: Address, params: RcptParams
    ) -> Outcome:
        seen = (connection.notes.find(COUNT) or 0) + 1
        connection.notes.set(COUNT, seen)
        if seen > self.config.max_count:
            return Verdict.DENYSOFT("4.5.3 too many", code=452)
        return Verdict.OK

    @override
    async def hook_capabilities(self, connection: Connection, capabilities: list[str]) -> Outcome:
        capabilities.append("X-TYPED")
        return None

    @override
    async def hook_unrecognized_command(
        self, connection: Connection, verb: str, argument: str
    ) -> Outcome:
        return Verdict.HOOK(value="x-custom")


async def hooks_can_be_called() -> None:
    plugin = GoodPlugin()
    recipient = Address("a", "b.example")
    assert_type(await plugin.hook_rcpt(make_connection(), recipient, RcptParams()), Outcome)
    connection = make_connection()
    assert_type(await call_hook(plugin, hooks.rcpt, connection, recipient, RcptParams()), Result)
    assert_type(await call_hook(plugin.hook_rcpt, connection, recipient, RcptParams()), Result)
    await call_hook(plugin.hook_rcpt, connection, recipient)  # type: ignore[call-overload]
    await call_hook(plugin.hook_rcpt, connection, "a@b.example", RcptParams())  # type: ignore[call-overload]
    awaitable: Awaitable[Outcome] = plugin.hook_noop(make_connection())
    assert_type(await awaitable, Outcome)


# --- plugins that must be refused -----------------------------------------------------------


class WrongParameterType(Plugin):
    @override
    async def hook_rcpt(  # type: ignore[override]
        self, connection: Connection, recipient: str, params: RcptParams
    ) -> Outcome:
        return None


class SyncHook(Plugin):
    @override
    def hook_connect(self, connection: Connection) -> Outcome:  # type: ignore[override]
        return None


class WrongReturnType(Plugin):
    @override
    async def hook_helo(self, connection: Connection, hostname: str) -> bool:  # type: ignore[override]
        return True


class ReturnsGarbage(Plugin):
    @override
    async def hook_queue(self, connection: Connection, transaction: Transaction) -> Outcome:
        return "OK"  # type: ignore[return-value]


class MisspeltHook(Plugin):
    @override
    async def hook_rcpt_to(self, connection: Connection) -> Outcome:  # type: ignore[misc]
        return None


class ExtraParameter(Plugin):
    @override
    async def hook_noop(self, connection: Connection, extra: int) -> Outcome:  # type: ignore[override]
        return None


class MissingOverride(Plugin):
    async def hook_quit(self, connection: Connection) -> Outcome:  # type: ignore[explicit-override]
        return None


class WrongHandlers(Plugin):
    @override
    def register(self) -> None:
        hooks.queue.register(self, self.wrong_shape)  # type: ignore[arg-type]
        hooks.queue.register(self, self.not_async)  # type: ignore[arg-type]
        hooks.rcpt.register(self, self.wrong_shape)  # type: ignore[arg-type]
        hooks.helo.register(self, self.wrong_types)  # type: ignore[arg-type]
        hooks.auth.register(self, self.wrong_types)  # type: ignore[arg-type]

    async def wrong_shape(
        self, connection: Connection, transaction: Transaction, recipient: Address
    ) -> Outcome:
        return None

    def not_async(self, connection: Connection, transaction: Transaction) -> Outcome:
        return None

    async def wrong_types(self, connection: Connection, hostname: int) -> Outcome:
        return None


async def core_hook_calls_are_checked(runner: HookRunner, connection: Connection) -> None:
    recipient = Address("a", "b.example")
    assert_type(await runner.run(hooks.rcpt, connection, recipient, RcptParams()), Decision)
    await runner.run(hooks.rcpt, connection, "a@b.example", RcptParams())  # type: ignore[arg-type]
    await runner.run(hooks.rcpt, connection, recipient)  # type: ignore[call-arg]
    await runner.run(hooks.helo, connection)  # type: ignore[call-arg]


def bookkeeping_is_read_only(connection: Connection) -> None:
    connection.relaying = True
    connection.authenticated_user = "mallory"  # type: ignore[misc]
    connection.transaction = None  # type: ignore[misc]
