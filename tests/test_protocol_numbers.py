"""Numeric protocol fields take ASCII digits only (RFC 5234 DIGIT), over real sockets.

``str.isdigit()`` is true for superscripts and for the digits of every script, and ``int()``
reads many of them: "BDAT ²" used to crash the command (421 Internal error) and "BDAT ٣ LAST"
or "SIZE=٣٣" were taken as numbers. AUTH= values that decode to control characters used to
reach plugins as they were.
"""

from __future__ import annotations

import pytest
import trio

from tsmtp.config import Listener, ProxySettings
from tsmtp.testing import SMTPClient, running_server, test_config

from .helpers import AcceptAll, MemoryQueue

PLUGINS = [AcceptAll, MemoryQueue]


async def in_transaction(client: SMTPClient) -> None:
    assert (await client.command("EHLO x")).code == 250
    assert (await client.command("MAIL FROM:<a@b.c>")).code == 250
    assert (await client.command("RCPT TO:<r@d.e>")).code == 250


@pytest.mark.parametrize(
    "command",
    [
        "BDAT ²",  # superscript two: isdigit() but int() refuses it
        "BDAT ٣ LAST",  # ARABIC-INDIC DIGIT THREE: int() reads it as 3
        "BDAT \uff13",  # FULLWIDTH DIGIT THREE
        "BDAT 1٣",
        "BDAT ²٣ LAST",
    ],
)
async def test_bdat_size_with_non_ascii_digits_is_a_syntax_error(command: str) -> None:
    async with running_server(PLUGINS) as srv:
        with trio.fail_after(10):  # a reply that never comes fails the test at once
            c = await srv.connect()
            await in_transaction(c)
            # No chunk follows: if the size were taken as a number, the server would wait for one.
            reply = await c.command(command)
            assert (reply.code, reply.lines[0][:5]) == (501, "5.5.4")
            assert (await c.command("NOOP")).code == 250
            # The transaction is intact: a real chunk still completes it.
            await c.send(b"BDAT 3 LAST\r\nabc")
            assert (await c.read_reply()).code == 250
    assert len(MemoryQueue.stored) == 1


@pytest.mark.parametrize("size", ["٣٣", "²", "\uff13\uff13", "1٣"])
async def test_mail_size_with_non_ascii_digits_is_a_syntax_error(size: str) -> None:
    async with running_server(PLUGINS) as srv:
        with trio.fail_after(10):  # a reply that never comes fails the test at once
            c = await srv.connect()
            assert (await c.command("EHLO x")).code == 250
            reply = await c.command(f"MAIL FROM:<a@b> SIZE={size}")
            assert reply.code in (501, 555)
            assert reply.lines[0].startswith("5.5.4")
            # Refused means no transaction was opened.
            assert (await c.command("RCPT TO:<r@d.e>")).code == 503
            assert (await c.command("MAIL FROM:<a@b> SIZE=33")).code == 250


@pytest.mark.parametrize(
    ("port", "accepted"), [("56", True), ("٥٦", False), ("\uff15\uff16", False)]
)
async def test_proxy_v1_port_takes_ascii_digits_only(port: str, accepted: bool) -> None:
    listener = Listener(address="127.0.0.1:0", proxy_protocol=True)
    config = test_config(listen=[listener], proxy=ProxySettings(trusted=["127.0.0.0/8"]))
    async with running_server(PLUGINS, config=config) as srv:
        with trio.fail_after(10):
            c = await srv.connect(read_greeting=False)
            await c.send(f"PROXY TCP4 192.0.2.1 198.51.100.7 {port} 25\r\n".encode())
            if accepted:
                assert (await c.read_reply()).code == 220
            else:  # a bad PROXY header is not answered: the connection is closed
                assert await c.at_eof()


@pytest.mark.parametrize(
    "auth", ["a+0D+0Ab@c.d", "a+0Ab@c.d", "a+00b@c.d", "+0D+0AX-Injected:+201"]
)
async def test_mail_auth_parameter_decoding_to_controls_is_refused(auth: str) -> None:
    config = test_config(listen=[Listener(address="127.0.0.1:0", auth="always")])
    async with running_server(PLUGINS, config=config) as srv:
        with trio.fail_after(10):  # a reply that never comes fails the test at once
            c = await srv.connect()
            assert any(line.startswith("AUTH ") for line in (await c.command("EHLO x")).lines)
            reply = await c.command(f"MAIL FROM:<a@b.c> AUTH={auth}")
            assert (reply.code, reply.lines[0][:5]) == (501, "5.5.4")
            assert (await c.command("MAIL FROM:<a@b.c> AUTH=a+2Bb@c.d")).code == 250
