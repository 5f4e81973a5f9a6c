"""The SMTP conversation over real sockets on 127.0.0.1."""

from __future__ import annotations

import pytest
import trio

from tsmtp.config import DataSettings, Limits
from tsmtp.testing import running_server, test_config

from .helpers import AcceptAll, MemoryQueue, body_after_received

PLUGINS = [AcceptAll, MemoryQueue]


async def test_greeting_ehlo_and_a_message() -> None:
    async with running_server(PLUGINS) as srv:
        c = await srv.connect()
        assert c.greeting.code == 220
        assert c.greeting.lines[0].startswith("tsmtp.test ")
        ehlo = await c.command("EHLO client.example")
        assert ehlo.code == 250
        keywords = {line.split(" ")[0] for line in ehlo.lines[1:]}
        assert {"PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "SIZE"} <= keywords
        assert (await c.command("MAIL FROM:<s@example.org>")).code == 250
        assert (await c.command("RCPT TO:<r@example.com>")).code == 250
        assert (await c.command("DATA")).code == 354
        reply = await c.command(b"Subject: hi\r\n\r\n..dot\r\nbody\r\n.")
        assert reply.code == 250 and reply.lines[0].startswith("2.0.0 ")
        assert (await c.command("QUIT")).code == 221
        assert await c.at_eof()
    [(sender, rcpts, message)] = MemoryQueue.stored
    assert (sender, rcpts) == ("s@example.org", ["r@example.com"])
    assert body_after_received(message) == b"Subject: hi\r\n\r\n.dot\r\nbody\r\n"
    assert b"by tsmtp.test (tsmtp) with ESMTP id" in message


async def test_sequence_errors() -> None:
    async with running_server(PLUGINS) as srv:
        c = await srv.connect()
        assert (await c.command("MAIL FROM:<a@b.c>")).code == 503
        assert (await c.command("HELO x")).code == 250
        assert (await c.command("RCPT TO:<a@b.c>")).code == 503
        assert (await c.command("DATA")).code == 503
        assert (await c.command("MAIL FROM:<a@b.c>")).code == 250
        assert (await c.command("MAIL FROM:<a@b.c>")).code == 503
        assert (await c.command("DATA")).code == 554
        assert (await c.command("RSET")).code == 250
        assert (await c.command("RCPT TO:<a@b.c>")).code == 503


async def test_syntax_and_unknown_commands() -> None:
    async with running_server(PLUGINS) as srv:
        c = await srv.connect()
        assert (await c.command("HELO")).code == 501
        assert (await c.command("EHLO x")).code == 250
        assert (await c.command("MAIL FROM:<bad@>")).code == 501
        assert (await c.command("MAIL FROM:<a@b.c> FOO=BAR")).code == 555
        assert (await c.command("FROB")).code == 500
        assert (await c.command("EXPN list")).code == 502
        assert (await c.command("RSET now")).code == 501
        vrfy = await c.command("VRFY someone")
        assert vrfy.code == 252
        assert (await c.command("VRFY")).code == 501
        assert (await c.command("NOOP whatever")).code == 250
        helped = await c.command("HELP")
        assert helped.code == 214
        assert (await c.command(b"NOOP\x00")).code == 500
        assert (await c.command(b"NOOP \xff")).code == 500


async def test_helo_clients_get_no_esmtp_parameters() -> None:
    async with running_server(PLUGINS) as srv:
        c = await srv.connect()
        assert (await c.command("HELO x")).code == 250
        assert (await c.command("MAIL FROM:<a@b.c> SIZE=10")).code == 555


async def test_pipelined_batch_answered_in_order_in_one_write() -> None:
    async with running_server(PLUGINS) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        await c.send(
            b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r1@d.e>\r\n"
            b"RCPT TO:<bad>\r\nRCPT TO:<r2@d.e>\r\nDATA\r\n"
        )
        # All five replies were written together, so they arrive in one read.
        with trio.fail_after(5):
            data = await c.stream.receive_some(65536)
        codes = [int(line[:3]) for line in data.split(b"\r\n") if line]
        assert codes == [250, 250, 501, 250, 354]
        await c.send(b"x\r\n.\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<r3@d.e>\r\nDATA\r\n")
        assert [(await c.read_reply()).code for _ in range(4)] == [250, 250, 250, 354]
        assert (await c.command("y\r\n.")).code == 250
    assert [rcpts for _, rcpts, _ in MemoryQueue.stored] == [["r1@d.e", "r2@d.e"], ["r3@d.e"]]


async def test_command_line_too_long() -> None:
    async with running_server(PLUGINS) as srv:
        c = await srv.connect()
        reply = await c.command("NOOP " + "x" * 600)
        assert reply.code == 500 and "5.5.2" in reply.text
        assert (await c.command("NOOP")).code == 250


async def test_too_many_errors_disconnects() -> None:
    config = test_config(limits=Limits(max_errors=3))
    async with running_server(PLUGINS, config=config) as srv:
        c = await srv.connect()
        assert (await c.command("BAD1")).code == 500
        assert (await c.command("BAD2")).code == 500
        await c.send(b"BAD3\r\n")
        assert (await c.read_reply()).code == 500
        assert (await c.read_reply()).code == 421
        assert await c.at_eof()


async def test_too_many_recipients_is_452() -> None:
    config = test_config(limits=Limits(max_recipients=3))
    async with running_server(PLUGINS, config=config) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        await c.command("MAIL FROM:<>")
        codes = [(await c.command(f"RCPT TO:<r{i}@d.e>")).code for i in range(5)]
        assert codes == [250, 250, 250, 452, 452]


async def test_message_size_limit() -> None:
    config = test_config(limits=Limits(max_message_size=1000))
    async with running_server(PLUGINS, config=config) as srv:
        c = await srv.connect()
        ehlo = await c.command("EHLO x")
        assert "SIZE 1000" in ehlo.lines
        assert (await c.command("MAIL FROM:<a@b.c> SIZE=1001")).code == 552
        assert (await c.command("MAIL FROM:<a@b.c> SIZE=1000")).code == 250
        await c.command("RCPT TO:<r@d.e>")
        await c.command("DATA")
        reply = await c.command(b"x" * 900 + b"\r\n" + b"y" * 900 + b"\r\n.")
        assert reply.code == 552
        # the session is still in step: a new transaction works
        assert (await c.send_message("a@b.c", ["r@d.e"], "small")).code == 250
    assert len(MemoryQueue.stored) == 1


async def test_long_text_line_in_data_is_refused() -> None:
    async with running_server(PLUGINS) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        await c.command("MAIL FROM:<a@b.c>")
        await c.command("RCPT TO:<r@d.e>")
        await c.command("DATA")
        reply = await c.command(b"z" * 1200 + b"\r\n.")
        assert reply.code == 554 and "5.6.0" in reply.text
    assert MemoryQueue.stored == []


SMUGGLING = [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\r\n.\n"]


async def test_smuggling_sequences_never_yield_two_messages() -> None:
    async with running_server(PLUGINS) as srv:
        for marker in SMUGGLING:
            c = await srv.connect()
            await c.command("EHLO x")
            await c.send(b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@d.e>\r\nDATA\r\n")
            assert [(await c.read_reply()).code for _ in range(3)] == [250, 250, 354]
            await c.send(
                b"Subject: one\r\n\r\nfirst"
                + marker
                + b"MAIL FROM:<evil@x.y>\r\nRCPT TO:<victim@d.e>\r\nDATA\r\n"
                + b"Subject: smuggled\r\n\r\nsecond\r\n.\r\n"
            )
            reply = await c.read_reply()
            assert reply.code == 550, (marker, reply)
            assert (await c.command("QUIT")).code == 221
    assert MemoryQueue.stored == []


async def test_normalize_mode_stores_one_message_with_crlf() -> None:
    config = test_config(data=DataSettings(bare_line_endings="normalize"))
    async with running_server(PLUGINS, config=config) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        await c.send(b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@d.e>\r\nDATA\r\n")
        [await c.read_reply() for _ in range(3)]
        reply = await c.command(b"one\n.\nMAIL FROM:<evil@x.y>\r\ntwo\r\n.")
        assert reply.code == 250
    [(_, _, message)] = MemoryQueue.stored
    assert body_after_received(message) == b"one\r\n.\r\nMAIL FROM:<evil@x.y>\r\ntwo\r\n"


async def test_command_timeout_closes_with_421() -> None:
    config = test_config(limits=Limits(command_timeout=0.3))
    async with running_server(PLUGINS, config=config) as srv:
        c = await srv.connect()
        with trio.fail_after(5):
            reply = await c.read_reply()
        assert reply.code == 421 and "4.4.2" in reply.text
        assert await c.at_eof()


async def test_data_timeout_stores_nothing() -> None:
    config = test_config(limits=Limits(data_timeout=0.3))
    async with running_server(PLUGINS, config=config) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        await c.command("MAIL FROM:<a@b.c>")
        await c.command("RCPT TO:<r@d.e>")
        await c.command("DATA")
        await c.send(b"partial body\r\n")
        with trio.fail_after(5):
            assert (await c.read_reply()).code == 421
    assert MemoryQueue.stored == []


async def test_client_dropping_mid_data_stores_nothing() -> None:
    async with running_server(PLUGINS) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        await c.command("MAIL FROM:<a@b.c>")
        await c.command("RCPT TO:<r@d.e>")
        await c.command("DATA")
        await c.send(b"Subject: half\r\n\r\nhalf a message\r\n")
        await c.aclose()
        await trio.sleep(0.2)
        # The server is still fine.
        c2 = await srv.connect()
        assert (await c2.command("NOOP")).code == 250
    assert MemoryQueue.stored == []


async def test_max_connections_refuses_with_421_when_no_connection_is_idle() -> None:
    config = test_config(limits=Limits(max_connections=2))
    async with running_server(PLUGINS, config=config) as srv:
        a = await srv.connect()
        b = await srv.connect()
        for client in (a, b):  # in a transaction: not idle, so not closed to make room
            await client.command("EHLO x")
            assert (await client.command("MAIL FROM:<a@b.c>")).code == 250
        c = await srv.connect()
        assert (a.greeting.code, b.greeting.code, c.greeting.code) == (220, 220, 421)
        await a.command("QUIT")
        await trio.sleep(0.1)
        d = await srv.connect()
        assert d.greeting.code == 220


async def test_smtputf8_addresses_need_the_parameter() -> None:
    async with running_server(PLUGINS) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        assert (await c.command("MAIL FROM:<用户@例子.广告>")).code == 553
        assert (await c.command("MAIL FROM:<a@b.c>")).code == 250
        assert (await c.command("RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>")).code == 553
        await c.command("RSET")
        assert (await c.command("MAIL FROM:<用户@例子.广告> SMTPUTF8")).code == 250
        assert (await c.command("RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>")).code == 250
        await c.command("DATA")
        assert (await c.command("Subject: ünïcödé\r\n\r\nhi\r\n.".encode())).code == 250
    [(sender, rcpts, message)] = MemoryQueue.stored
    assert sender == "用户@例子.广告" and rcpts == ["δοκιμή@παράδειγμα.δοκιμή"]
    assert b"with UTF8SMTP" in message


async def test_graceful_shutdown_lets_a_transaction_finish() -> None:
    async with running_server(PLUGINS) as srv:
        idle = await srv.connect()
        busy = await srv.connect()
        await busy.command("EHLO x")
        await busy.command("MAIL FROM:<a@b.c>")
        await busy.command("RCPT TO:<r@d.e>")
        await busy.command("DATA")
        srv.server.shutdown()
        with trio.fail_after(5):
            assert (await idle.read_reply()).code == 421
        assert (await busy.command("body\r\n.")).code == 250
        with trio.fail_after(5):
            assert (await busy.read_reply()).code == 421
    assert len(MemoryQueue.stored) == 1


async def test_more_than_a_thousand_idle_connections() -> None:
    """File descriptors above 1024 work everywhere (no select())."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the file descriptor limit ({hard}) is too low")
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    try:
        config = test_config(limits=Limits(max_connections=5000, max_connections_per_ip=5000))
        async with running_server(PLUGINS, config=config) as srv:
            clients = []
            for _ in range(1200):
                clients.append(await srv.connect())
            assert {c.greeting.code for c in clients} == {220}
            assert (await clients[-1].command("EHLO x")).code == 250
            for c in clients:
                await c.aclose()
            srv.clients.clear()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
