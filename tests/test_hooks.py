"""Hook semantics: chains, verdicts, deny overrides, failures of every kind, over real sockets."""

from __future__ import annotations

from typing import ClassVar

import pytest
import trio

from tsmtp import (
    Address,
    Connection,
    Denial,
    MailParams,
    NoteKey,
    Outcome,
    Plugin,
    PluginConfig,
    RcptParams,
    Transaction,
    Verdict,
    hooks,
    override,
)
from tsmtp.testing import call_hook, make_connection, make_plugin, running_server

from .helpers import AcceptAll, MemoryQueue


class Raises(Plugin):
    @override
    async def hook_mail(
        self, connection: Connection, sender: Address, params: MailParams
    ) -> Outcome:
        if sender.local_part == "boom":
            raise RuntimeError("plugin bug")
        return None


class HangsConfig(PluginConfig, kw_only=True, frozen=True):
    pass


class Hangs(Plugin):
    config: HangsConfig

    @override
    async def hook_rcpt(
        self, connection: Connection, recipient: Address, params: RcptParams
    ) -> Outcome:
        if recipient.local_part == "slow":
            await trio.sleep_forever()
        return None


class Garbage(Plugin):
    @override
    async def hook_helo(self, connection: Connection, hostname: str) -> Outcome:
        if hostname == "garbage":
            return 250  # type: ignore[return-value]
        return None


class Disconnects(Plugin):
    @override
    async def hook_rcpt(
        self, connection: Connection, recipient: Address, params: RcptParams
    ) -> Outcome:
        if recipient.local_part == "bye":
            return Verdict.DENYDISCONNECT("go away")
        if recipient.local_part == "drop":
            return Verdict.DISCONNECT
        return None


async def test_raising_hanging_garbage_and_disconnecting_plugins() -> None:
    hangs = make_plugin(Hangs, config=HangsConfig(timeout=0.3))
    async with running_server([Raises, hangs, Garbage, Disconnects, AcceptAll, MemoryQueue]) as srv:
        c = await srv.connect()
        assert (await c.command("HELO garbage")).code == 450  # returned 250: logged, 4xx
        assert (await c.command("HELO fine")).code == 250
        reply = await c.command("MAIL FROM:<boom@x.y>")
        assert reply.code == 450 and reply.lines[0].startswith("4.")
        assert (await c.command("MAIL FROM:<ok@x.y>")).code == 250
        with trio.fail_after(5):
            reply = await c.command("RCPT TO:<slow@d.e>")
        assert reply.code == 450 and "timeout" in reply.text.lower()
        assert (await c.command("RCPT TO:<fast@d.e>")).code == 250
        reply = await c.command("RCPT TO:<bye@d.e>")
        assert (reply.code, reply.lines) == (550, ["5.7.1 go away"])
        assert await c.at_eof()

        other = await srv.connect()
        await other.command("EHLO x")
        await other.command("MAIL FROM:<a@b.c>")
        await other.send(b"RCPT TO:<drop@d.e>\r\n")
        assert await other.at_eof()

        # Meanwhile and afterwards the server serves others normally.
        third = await srv.connect()
        await third.command("EHLO x")
        assert (await third.send_message("a@b.c", ["r@d.e"], "hi")).code == 250
    assert len(MemoryQueue.stored) == 1


class Order(Plugin):
    calls: ClassVar[list[str]] = []

    @override
    def register(self) -> None:
        hooks.rcpt.register(self, self.first)
        hooks.rcpt.register(self, self.second)

    async def first(
        self, connection: Connection, recipient: Address, params: RcptParams
    ) -> Outcome:
        self.calls.append(f"{self.name}.first")
        return None

    async def second(
        self, connection: Connection, recipient: Address, params: RcptParams
    ) -> Outcome:
        self.calls.append(f"{self.name}.second")
        return Verdict.OK if recipient.local_part == self.name else None

    @override
    async def hook_rcpt(
        self, connection: Connection, recipient: Address, params: RcptParams
    ) -> Outcome:
        self.calls.append(f"{self.name}.hook_rcpt")
        return None


async def test_order_is_config_order_then_registration_and_ok_stops() -> None:
    a = make_plugin(Order, name="a")
    b = make_plugin(Order, name="b")
    async with running_server([a, b]) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        await c.command("MAIL FROM:<>")
        Order.calls.clear()
        assert (await c.command("RCPT TO:<b@d.e>")).code == 250
        assert Order.calls == [
            "a.first",
            "a.second",
            "a.hook_rcpt",
            "b.first",
            "b.second",
        ]
        Order.calls.clear()
        assert (await c.command("RCPT TO:<a@d.e>")).code == 250
        assert Order.calls == ["a.first", "a.second"]
        reply = await c.command("RCPT TO:<nobody@d.e>")
        assert reply.code == 550 and "I cannot deliver for that user" in reply.text


class DenyBlocked(Plugin):
    @override
    async def hook_rcpt(
        self, connection: Connection, recipient: Address, params: RcptParams
    ) -> Outcome:
        if recipient.local_part.startswith("blocked"):
            return Verdict.DENY(["5.1.1 blocked here", "see policy"])
        if recipient.local_part == "later":
            return Verdict.DENYSOFT
        return None


class Forgive(Plugin):
    seen: ClassVar[list[Denial]] = []

    @override
    async def hook_deny(self, connection: Connection, denial: Denial) -> Outcome:
        self.seen.append(denial)
        if denial.params and str(denial.params[0]).startswith("blocked-but-vip"):
            return Verdict.OK
        return None


async def test_deny_hook_sees_denials_and_ok_overrides_them() -> None:
    Forgive.seen.clear()
    async with running_server([DenyBlocked, Forgive, AcceptAll]) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        await c.command("MAIL FROM:<>")
        reply = await c.command("RCPT TO:<blocked@d.e>")
        assert reply.code == 550
        assert reply.lines == ["5.1.1 blocked here", "5.1.1 see policy"]
        assert (await c.command("RCPT TO:<later@d.e>")).code == 450
        assert (await c.command("RCPT TO:<blocked-but-vip@d.e>")).code == 250
    assert [d.verdict for d in Forgive.seen] == [Verdict.DENY, Verdict.DENYSOFT, Verdict.DENY]
    assert Forgive.seen[0].plugin == "denyblocked" and Forgive.seen[0].hook == "rcpt"


class Relay(Plugin):
    outbound: ClassVar[list[str]] = []

    @override
    async def hook_connect(self, connection: Connection) -> Outcome:
        connection.relaying = True
        return None

    @override
    async def hook_queue_outbound(
        self, connection: Connection, transaction: Transaction
    ) -> Outcome:
        assert connection.transaction is not None
        self.outbound.append(str(connection.transaction.recipients[0]))
        return Verdict.OK("queued for relay")


async def test_relaying_accepts_any_recipient_and_uses_queue_outbound() -> None:
    Relay.outbound.clear()
    async with running_server([Relay, MemoryQueue]) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        await c.command("MAIL FROM:<a@b.c>")
        assert (await c.command("RCPT TO:<anyone@far.away>")).code == 250
        await c.command("DATA")
        reply = await c.command("hi\r\n.")
        assert (reply.code, reply.lines) == (250, ["2.0.0 queued for relay"])
    assert Relay.outbound == ["anyone@far.away"]
    assert MemoryQueue.stored == []


async def test_no_queue_plugin_is_451_never_a_silent_loss() -> None:
    async with running_server([AcceptAll]) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        reply = await c.send_message("a@b.c", ["r@d.e"], "hi")
        assert reply.code == 451 and "4.3.0" in reply.text


class RcptOkVeto(Plugin):
    @override
    async def hook_rcpt_ok(self, connection: Connection, recipient: Address) -> Outcome:
        return Verdict.DENYSOFT("mailbox busy") if recipient.local_part == "busy" else None


async def test_rcpt_ok_runs_after_ok_and_may_refuse() -> None:
    async with running_server([AcceptAll, RcptOkVeto, MemoryQueue]) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        await c.command("MAIL FROM:<a@b.c>")
        assert (await c.command("RCPT TO:<busy@d.e>")).lines == ["4.7.1 mailbox busy"]
        assert (await c.command("RCPT TO:<free@d.e>")).code == 250


class Gatekeeper(Plugin):
    @override
    async def hook_connect(self, connection: Connection) -> Outcome:
        if connection.remote.ip == "127.0.0.1":
            return Verdict.DENY("not from here")
        return None


async def test_connect_deny_answers_554_then_503_until_quit() -> None:
    async with running_server([Gatekeeper]) as srv:
        c = await srv.connect()
        assert (c.greeting.code, c.greeting.lines) == (554, ["5.7.1 not from here"])
        assert (await c.command("EHLO x")).code == 503
        assert (await c.command("MAIL FROM:<a@b.c>")).code == 503
        assert (await c.command("QUIT")).code == 221


class Rdns(Plugin):
    @override
    async def hook_lookup_rdns(self, connection: Connection) -> Outcome:
        return Verdict.OK(value="client.example.net")


async def test_lookup_rdns_value_reaches_the_received_header() -> None:
    async with running_server([Rdns, AcceptAll, MemoryQueue]) as srv:
        c = await srv.connect()
        reply = await c.command("EHLO helo.name")
        assert "client.example.net" in reply.lines[0]
        await c.send_message("a@b.c", ["r@d.e"], "hi")
    message = MemoryQueue.stored[0][2]
    assert message.startswith(b"Received: from helo.name (client.example.net [127.0.0.1])")


SEEN = NoteKey("test.seen", int)


class Counter(Plugin):
    log: ClassVar[list[tuple[int, object, object]]] = []

    @override
    async def hook_rcpt(
        self, connection: Connection, recipient: Address, params: RcptParams
    ) -> Outcome:
        count = (connection.notes.find(SEEN) or 0) + 1
        connection.notes.set(SEEN, count)
        txn = connection.transaction
        assert txn is not None
        txn.notes["last"] = recipient.address
        self.server.notes["total"] = int(str(self.server.notes.get("total", 0))) + 1
        return None

    @override
    async def hook_data_post(self, connection: Connection, transaction: Transaction) -> Outcome:
        txn = connection.transaction
        assert txn is not None
        self.log.append((connection.notes[SEEN], txn.notes["last"], self.server.notes["total"]))
        if txn.header()["Subject"] == "reject me":
            return Verdict.DENY("content refused")
        return None


async def test_notes_at_three_levels_and_data_post_denial() -> None:
    Counter.log.clear()
    async with running_server([Counter, AcceptAll, MemoryQueue]) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        for subject in ("fine", "reject me"):
            await c.command("MAIL FROM:<a@b.c>")
            await c.command("RCPT TO:<r1@d.e>")
            await c.command("RCPT TO:<r2@d.e>")
            await c.command("DATA")
            reply = await c.command(f"Subject: {subject}\r\n\r\nbody\r\n.")
            assert reply.code == (250 if subject == "fine" else 550)
    assert Counter.log == [(2, "r2@d.e", 2), (4, "r2@d.e", 4)]
    assert len(MemoryQueue.stored) == 1


class Extension(Plugin):
    @override
    async def hook_capabilities(self, connection: Connection, capabilities: list[str]) -> Outcome:
        capabilities.append("XHELLO")
        capabilities.remove("SMTPUTF8")
        return None

    @override
    async def hook_unrecognized_command(
        self, connection: Connection, verb: str, argument: str
    ) -> Outcome:
        if verb == "XHELLO":
            return Verdict.OK(f"hello {argument}")
        if verb == "XJUMP":
            return Verdict.HOOK(value="x_custom")
        return None

    @override
    def register(self) -> None:
        self.register_custom_hook("x_custom", self.custom)

    async def custom(self, connection: Connection, verb: str, argument: str) -> Outcome:
        return Verdict.DENY("custom hook says no")


async def test_capabilities_and_unrecognized_command_and_hook() -> None:
    async with running_server([Extension]) as srv:
        c = await srv.connect()
        ehlo = await c.command("EHLO x")
        assert "XHELLO" in ehlo.lines and "SMTPUTF8" not in ehlo.lines
        assert (await c.command("MAIL FROM:<a@b.c> SMTPUTF8")).code == 555
        assert (await c.command("XHELLO world")).lines == ["2.0.0 hello world"]
        assert (await c.command("XJUMP")).lines == ["5.5.1 custom hook says no"]
        assert (await c.command("XOTHER")).code == 500


class Observer(Plugin):
    events: ClassVar[list[str]] = []

    @override
    async def hook_reset_transaction(
        self, connection: Connection, transaction: Transaction
    ) -> Outcome:
        self.events.append("reset")
        raise RuntimeError("observers may fail too")

    @override
    async def hook_disconnect(self, connection: Connection) -> Outcome:
        self.events.append(f"disconnect closing={connection.closing}")
        return None

    @override
    async def hook_queue_ok(
        self, connection: Connection, transaction: Transaction, message: str
    ) -> Outcome:
        self.events.append(f"queue_ok {message.split()[0]}")
        return Verdict.DENY  # ignored


async def test_reset_and_disconnect_always_run_even_when_the_client_vanishes() -> None:
    Observer.events.clear()
    async with running_server([Observer, AcceptAll, MemoryQueue]) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        assert (await c.send_message("a@b.c", ["r@d.e"], "hi")).code == 250
        await c.command("MAIL FROM:<a@b.c>")
        await c.aclose()
        with trio.fail_after(5):
            while not any(e.startswith("disconnect") for e in Observer.events):  # noqa: ASYNC110
                await trio.sleep(0.01)
    assert Observer.events == ["queue_ok Message", "reset", "reset", "disconnect closing=True"]


async def test_call_hook_without_a_socket() -> None:
    plugin = make_plugin(DenyBlocked)
    conn = make_connection()
    result = await call_hook(plugin, hooks.rcpt, conn, Address("blocked", "d.e"), RcptParams())
    assert result.verdict is Verdict.DENY
    assert result.message == ("5.1.1 blocked here", "see policy")
    ok = await call_hook(plugin, hooks.rcpt, conn, Address("fine", "d.e"), RcptParams())
    assert ok.verdict is Verdict.CONT
    crashing = make_plugin(Raises)
    failed = await call_hook(crashing, hooks.mail, conn, Address("boom", "x.y"), MailParams())
    assert failed.verdict is Verdict.DENYSOFT
    by_method = await call_hook(plugin.hook_rcpt, conn, Address("blocked", "d.e"), RcptParams())
    assert by_method == result


async def test_call_hook_refuses_a_hook_that_is_not_a_spec() -> None:
    plugin = make_plugin(DenyBlocked)
    with pytest.raises(TypeError, match=r"hook is a spec such as hooks.rcpt"):
        await call_hook(plugin, "data-post", make_connection())  # type: ignore[call-overload]


async def test_call_hook_refuses_arguments_that_do_not_fit_the_hook() -> None:
    plugin = make_plugin(DenyBlocked)
    conn = make_connection()
    with pytest.raises(
        TypeError, match=r"wrong arguments for rcpt\(connection: Connection, recipient: Address"
    ):
        await call_hook(plugin, hooks.rcpt, conn, Address("a", "d.e"))  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="recipient must be Address, not str"):
        await call_hook(plugin, hooks.rcpt, conn, "a@d.e", RcptParams())  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="connection must be Connection, not NoneType"):
        await call_hook(plugin, hooks.rcpt, None, Address("a", "d.e"), RcptParams())  # type: ignore[call-overload]
