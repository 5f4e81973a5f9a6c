"""Hooks are ordinary awaits inside their deadline: whatever a hook does first (sleep, open a
nursery, enter its own cancel scope) works on every hook point, and whatever it raises is that
plugin's failure, never the server's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar

import pytest
import trio

from tsmtp import (
    Address,
    Connection,
    MailParams,
    Outcome,
    Plugin,
    RcptParams,
    Transaction,
    Verdict,
    override,
)
from tsmtp.config import PluginSettings
from tsmtp.testing import running_server, test_config

from .helpers import MemoryQueue, wait_for


async def sleep_first() -> None:
    await trio.sleep(0.01)


async def nursery_first() -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep, 0.01)


async def move_on_after_first() -> None:
    with trio.move_on_after(5):
        await trio.sleep(0.01)


async def fail_after_first() -> None:
    with trio.fail_after(5):
        await trio.sleep(0.01)


async def own_timeout_fires_first() -> None:
    # The hook's own, shorter deadline fires; the hook goes on and finishes normally.
    with trio.move_on_after(0.01):
        await trio.sleep_forever()


async def shielded_first() -> None:
    with trio.CancelScope(shield=True):
        await trio.sleep(0.01)


FIRST_STEPS: dict[str, Callable[[], Awaitable[None]]] = {
    "sleep": sleep_first,
    "nursery": nursery_first,
    "move_on_after": move_on_after_first,
    "fail_after": fail_after_first,
    "own_timeout": own_timeout_fires_first,
    "shield": shielded_first,
}


class EnterScopesFirst(Plugin):
    """Every hook point starts with the same first step, then records that it finished."""

    first_step: ClassVar[Callable[[], Awaitable[None]]] = sleep_first
    finished: ClassVar[list[str]] = []

    async def _step(self, hook: str) -> None:
        await type(self).first_step()
        self.finished.append(hook)

    @override
    async def hook_connect(self, connection: Connection) -> Outcome:
        await self._step("connect")
        return None

    @override
    async def hook_helo(self, connection: Connection, hostname: str) -> Outcome:
        await self._step("helo")
        return None

    @override
    async def hook_ehlo(self, connection: Connection, hostname: str) -> Outcome:
        await self._step("ehlo")
        return None

    @override
    async def hook_mail(
        self, connection: Connection, sender: Address, params: MailParams
    ) -> Outcome:
        await self._step("mail")
        return None

    @override
    async def hook_rcpt(
        self, connection: Connection, recipient: Address, params: RcptParams
    ) -> Outcome:
        await self._step("rcpt")
        return Verdict.OK

    @override
    async def hook_data_post(self, connection: Connection, transaction: Transaction) -> Outcome:
        await self._step("data_post")
        return None

    @override
    async def hook_queue(self, connection: Connection, transaction: Transaction) -> Outcome:
        await self._step("queue")
        return None  # MemoryQueue, next in the chain, stores the message

    @override
    async def hook_disconnect(self, connection: Connection) -> Outcome:
        await self._step("disconnect")
        return None


@pytest.mark.parametrize("first_step", sorted(FIRST_STEPS))
async def test_every_hook_point_may_enter_a_scope_before_its_first_await(first_step: str) -> None:
    EnterScopesFirst.first_step = FIRST_STEPS[first_step]
    EnterScopesFirst.finished = []
    async with running_server([EnterScopesFirst, MemoryQueue]) as srv:
        client = await srv.connect()
        assert client.greeting.code == 220
        assert (await client.command("HELO client.test")).code == 250
        assert (await client.command("EHLO client.test")).code == 250
        reply = await client.send_message(
            "a@client.test", ["b@example.com"], "Subject: x\r\n\r\nhi"
        )
        assert reply.code == 250, reply
        assert (await client.command("QUIT")).code == 221
        await wait_for(lambda: "disconnect" in EnterScopesFirst.finished)
    assert EnterScopesFirst.finished == [
        "connect",
        "helo",
        "ehlo",
        "mail",
        "rcpt",
        "data_post",
        "queue",
        "disconnect",
    ]
    assert len(MemoryQueue.stored) == 1


class NurseryThatHangs(Plugin):
    @override
    async def hook_mail(
        self, connection: Connection, sender: Address, params: MailParams
    ) -> Outcome:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            nursery.start_soon(trio.sleep_forever)
        return None


async def test_a_nursery_cut_by_the_plugin_timeout_is_a_timeout(autojump_clock: object) -> None:
    config = test_config(plugins=PluginSettings(timeout=2))
    async with running_server([NurseryThatHangs], config=config) as srv:
        client = await srv.connect()
        await client.command("EHLO client.test")
        reply = await client.command("MAIL FROM:<a@client.test>")
        assert reply.code == 450 and "timeout" in reply.text.lower()
        # The connection is still usable after the timeout.
        assert (await client.command("NOOP")).code == 250


class RaisesAnything(Plugin):
    """``MAIL FROM:<kind@...>`` raises the exception named by the local part."""

    raised: ClassVar[dict[str, type[BaseException]]] = {
        "systemexit": SystemExit,
        "keyboardinterrupt": KeyboardInterrupt,
        "generatorexit": GeneratorExit,
        "baseexception": BaseException,
        "group": BaseExceptionGroup,
    }

    @override
    async def hook_mail(
        self, connection: Connection, sender: Address, params: MailParams
    ) -> Outcome:
        kind = self.raised.get(sender.local_part)
        if kind is BaseExceptionGroup:
            raise BaseExceptionGroup("several", [KeyboardInterrupt(), ValueError()])
        if kind is not None:
            raise kind()
        return None


@pytest.mark.parametrize("kind", sorted(RaisesAnything.raised))
async def test_a_plugin_raising_a_base_exception_fails_only_its_own_hook(kind: str) -> None:
    async with running_server([RaisesAnything]) as srv:
        client = await srv.connect()
        await client.command("EHLO client.test")
        reply = await client.command(f"MAIL FROM:<{kind}@client.test>")
        assert reply.code == 450 and "internal error" in reply.text.lower()
        # Same connection, then a new one: the server is still serving.
        assert (await client.command("MAIL FROM:<ok@client.test>")).code == 250
        other = await srv.connect()
        assert other.greeting.code == 220
        assert (await other.command("EHLO again.test")).code == 250


class HangsUntilCancelled(Plugin):
    cancelled: ClassVar[list[str]] = []

    @override
    async def hook_mail(
        self, connection: Connection, sender: Address, params: MailParams
    ) -> Outcome:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever)
                await trio.sleep_forever()
        except BaseException:
            self.cancelled.append(connection.uuid)
            raise
        return None


async def test_cancellation_from_outside_still_reaches_a_hook_in_a_nursery() -> None:
    HangsUntilCancelled.cancelled = []
    async with running_server([HangsUntilCancelled], config=test_config(shutdown_grace=0)) as srv:
        client = await srv.connect()
        await client.command("EHLO client.test")
        await client.send("MAIL FROM:<a@client.test>\r\n")
        await wait_for(lambda: srv.server.active_connections == 1)
        await trio.sleep(0.05)
        srv.server.shutdown()
        # The session is in a transaction, so it is not stopped at once; with no grace period
        # its tasks are cancelled, and the cancellation must reach the hook inside its nursery.
        await wait_for(lambda: bool(HangsUntilCancelled.cancelled))
        await wait_for(lambda: srv.server.active_connections == 0)
        assert await client.at_eof()
