"""BDAT, SIZE at the limit, PROXY headers, and hostile clients, over real sockets."""

from __future__ import annotations

import struct

import trio

from tsmtp import Connection, Outcome, Plugin, Transaction, Verdict, override
from tsmtp.config import Limits, Listener, ProxySettings
from tsmtp.testing import running_server, test_config

from .helpers import AcceptAll, MemoryQueue, body_after_received

PLUGINS = [AcceptAll, MemoryQueue]


async def test_bdat_chunks_and_last() -> None:
    async with running_server(PLUGINS) as srv:
        c = await srv.connect()
        assert "CHUNKING" in (await c.command("EHLO x")).lines
        await c.command("MAIL FROM:<a@b.c>")
        await c.command("RCPT TO:<r@d.e>")
        first = b"Subject: chunks\r\n\r\n.not stuffed\r\nbare\nlf\r\n"
        second = b"second chunk\r\n"
        reply = await c.command(f"BDAT {len(first)}".encode() + b"\r\n" + first[:-2])
        assert reply.code == 250 and f"{len(first)} octets" in reply.text
        # Pipelined: the next BDAT LAST and a NOOP in one write.
        await c.send(f"BDAT {len(second)} LAST\r\n".encode() + second + b"NOOP\r\n")
        assert (await c.read_reply()).code == 250
        assert (await c.read_reply()).code == 250
        assert (await c.command("DATA")).code == 503
        # A zero-length last chunk ends a message too.
        await c.command("MAIL FROM:<a@b.c>")
        await c.command("RCPT TO:<r@d.e>")
        await c.send(b"BDAT 3\r\nabc")
        assert (await c.read_reply()).code == 250
        assert (await c.command("BDAT 0 LAST")).code == 250
    bodies = [body_after_received(m) for _, _, m in MemoryQueue.stored]
    assert bodies == [first + second, b"abc"]


async def test_bdat_out_of_sequence_is_consumed_and_refused() -> None:
    async with running_server(PLUGINS) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        await c.send(b"BDAT 10 LAST\r\nNOOP\r\nNOOP")
        assert (await c.read_reply()).code == 503
        assert (await c.command("NOOP")).code == 250  # the chunk was not read as commands
        assert (await c.command("BDAT ten")).code == 501


async def test_bdat_over_the_size_limit() -> None:
    config = test_config(limits=Limits(max_message_size=10))
    async with running_server(PLUGINS, config=config) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        await c.command("MAIL FROM:<a@b.c>")
        await c.command("RCPT TO:<r@d.e>")
        await c.send(b"BDAT 8\r\n12345678")
        assert (await c.read_reply()).code == 250
        await c.send(b"BDAT 8 LAST\r\n12345678")
        assert (await c.read_reply()).code == 552
        assert (await c.command("NOOP")).code == 250
    assert MemoryQueue.stored == []


async def test_size_exactly_at_the_limit_is_accepted() -> None:
    config = test_config(limits=Limits(max_message_size=100))
    async with running_server(PLUGINS, config=config) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        await c.command("MAIL FROM:<a@b.c> SIZE=100")
        await c.command("RCPT TO:<r@d.e>")
        await c.command("DATA")
        assert (await c.command(b"x" * 98 + b"\r\n.")).code == 250
        await c.command("MAIL FROM:<a@b.c>")
        await c.command("RCPT TO:<r@d.e>")
        await c.command("DATA")
        assert (await c.command(b"x" * 99 + b"\r\n.")).code == 552


class Remember(Plugin):
    seen: list[str] = []

    @override
    async def hook_connect(self, connection: Connection) -> Outcome:
        self.seen.append(f"{connection.remote.ip}:{connection.remote.port}")
        return Verdict.CONT


def proxy_v2(src: str, dst: str, sport: int, dport: int) -> bytes:
    addresses = bytes(map(int, src.split("."))) + bytes(map(int, dst.split(".")))
    payload = addresses + struct.pack("!HH", sport, dport)
    return (
        b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(payload)) + payload
    )


async def test_proxy_protocol_from_trusted_and_untrusted_peers() -> None:
    Remember.seen = []
    listener = Listener(address="127.0.0.1:0", proxy_protocol=True)
    trusted = test_config(listen=[listener], proxy=ProxySettings(trusted=["127.0.0.0/8"]))
    async with running_server([Remember, *PLUGINS], config=trusted) as srv:
        c = await srv.connect(read_greeting=False)
        await c.send(b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 25\r\n")
        assert (await c.read_reply()).code == 220
        ehlo = await c.command("EHLO x")
        assert "[203.0.113.7]" in ehlo.lines[0]
        await c.send_message("a@b.c", ["r@d.e"], "hi")

        v2 = await srv.connect(read_greeting=False)
        await v2.send(proxy_v2("198.51.100.9", "192.0.2.1", 40000, 25))
        assert (await v2.read_reply()).code == 220

        bad = await srv.connect(read_greeting=False)
        await bad.send(b"EHLO no-proxy-header\r\n")
        assert await bad.at_eof()
    assert Remember.seen == ["203.0.113.7:51000", "198.51.100.9:40000"]
    assert b"(unknown [203.0.113.7])" in MemoryQueue.stored[0][2]

    untrusted = test_config(listen=[listener], proxy=ProxySettings(trusted=["10.0.0.0/8"]))
    async with running_server([Remember, *PLUGINS], config=untrusted) as srv:
        c = await srv.connect(read_greeting=False)
        await c.send(b"PROXY TCP4 203.0.113.8 192.0.2.1 51000 25\r\n")
        assert await c.at_eof()
    assert len(Remember.seen) == 2


async def test_slow_loris_is_cut_off_by_the_line_deadline() -> None:
    config = test_config(limits=Limits(command_timeout=0.5))
    async with running_server(PLUGINS, config=config) as srv:
        c = await srv.connect()
        start = trio.current_time()
        with trio.fail_after(5):
            try:
                for byte in b"EHLO slowly-but-surely.example.com\r\n":
                    await c.send(bytes([byte]))
                    await trio.sleep(0.05)
            except trio.BrokenResourceError:
                pass
            reply = await c.read_reply()
        assert reply.code == 421
        assert (
            0.4 < trio.current_time() - start < 1.6
        )  # cut at 0.5 s, long before the 1.8 s the line takes


async def test_slow_data_is_cut_off_by_the_total_data_deadline() -> None:
    config = test_config(limits=Limits(data_timeout=10, data_total_timeout=0.5))
    async with running_server(PLUGINS, config=config) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        await c.command("MAIL FROM:<a@b.c>")
        await c.command("RCPT TO:<r@d.e>")
        await c.command("DATA")
        with trio.fail_after(5):
            try:
                while True:
                    await c.send(b"x\r\n")
                    await trio.sleep(0.05)
            except trio.BrokenResourceError:
                pass
        with trio.fail_after(5):
            assert (await c.read_reply()).code == 421
    assert MemoryQueue.stored == []


async def test_per_address_connection_limit() -> None:
    config = test_config(limits=Limits(max_connections_per_ip=2, exempt_networks=[]))
    async with running_server(PLUGINS, config=config) as srv:
        a = await srv.connect()
        b = await srv.connect()
        c = await srv.connect()
        assert (a.greeting.code, b.greeting.code) == (220, 220)
        assert c.greeting.code == 421 and "4.7.0" in c.greeting.text
        await a.command("QUIT")
        await trio.sleep(0.1)
        assert (await srv.connect()).greeting.code == 220


async def test_connection_rate_limit() -> None:
    config = test_config(limits=Limits(max_connection_rate_per_ip=3, exempt_networks=[]))
    async with running_server(PLUGINS, config=config) as srv:
        codes = []
        for _ in range(4):
            c = await srv.connect()
            codes.append(c.greeting.code)
            if c.greeting.code == 220:
                await c.command("QUIT")
        assert codes == [220, 220, 220, 421]


async def test_early_talker_is_refused() -> None:
    config = test_config(limits=Limits(greeting_delay=0.3))
    async with running_server(PLUGINS, config=config) as srv:
        rude = await srv.connect(read_greeting=False)
        await rude.send(b"EHLO too-early\r\n")
        reply = await rude.read_reply()
        assert reply.code == 554 and "before my greeting" in reply.text
        assert await rude.at_eof()
        polite = await srv.connect()
        assert polite.greeting.code == 220


class RdnsDenied(Plugin):
    @override
    async def hook_lookup_rdns(self, connection: Connection) -> Outcome:
        return Verdict.DENY


async def test_lookup_rdns_deny_answers_554_then_503() -> None:
    async with running_server([RdnsDenied]) as srv:
        c = await srv.connect()
        assert c.greeting.code == 554
        assert (await c.command("EHLO x")).code == 503
        assert (await c.command("QUIT")).code == 221


async def test_dsn_parameters_are_kept_only_when_dsn_is_enabled() -> None:
    async with running_server(PLUGINS) as srv:
        c = await srv.connect()
        assert "DSN" not in (await c.command("EHLO x")).lines
        assert (await c.command("MAIL FROM:<a@b.c> RET=HDRS")).code == 555
    seen: list[tuple[object, ...]] = []

    class Keep(Plugin):
        @override
        async def hook_data_post(self, connection: Connection, transaction: Transaction) -> Outcome:
            txn = connection.transaction
            assert txn is not None
            p = txn.mail_params
            seen.append(
                (p.ret, p.envid, txn.recipients[0].params.notify, txn.recipients[0].params.orcpt)
            )
            return None

    async with running_server([Keep, *PLUGINS], config=test_config(dsn=True)) as srv:
        c = await srv.connect()
        assert "DSN" in (await c.command("EHLO x")).lines
        assert (await c.command("MAIL FROM:<a@b.c> RET=HDRS ENVID=QQ314159")).code == 250
        assert (
            await c.command("RCPT TO:<r@d.e> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;r@d.e")
        ).code == 250
        assert (await c.command("RCPT TO:<s@d.e> NOTIFY=NEVER,DELAY")).code == 501
        await c.command("DATA")
        assert (await c.command("hi\r\n.")).code == 250
    assert seen == [("HDRS", "QQ314159", ("SUCCESS", "FAILURE"), "rfc822;r@d.e")]
