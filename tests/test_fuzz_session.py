"""Whatever a client sends, the session answers with protocol replies and never fails inside."""

from __future__ import annotations

import logging

import trio
import trio.lowlevel
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typing_extensions import override

from tsmtp.connection import Peer
from tsmtp.server import Server
from tsmtp.session import Session
from tsmtp.testing import make_plugin, test_config

from .helpers import AcceptAll, MemoryQueue

COMMANDS = [
    b"EHLO x",
    b"HELO y",
    b"MAIL FROM:<a@b.c>",
    b"MAIL FROM:<>",
    b"MAIL FROM:<a@b.c> SIZE=10 BODY=8BITMIME",
    b"RCPT TO:<r@d.e>",
    b"RCPT TO:<Postmaster>",
    b"DATA",
    b"BDAT 5",
    b"BDAT 0 LAST",
    b"RSET",
    b"NOOP",
    b"VRFY x",
    b"HELP",
    b"STARTTLS",
    b"AUTH PLAIN",
    b"AUTH LOGIN",
    b".",
    b"",
    b"QUIT",
]

pieces = st.one_of(
    st.sampled_from(COMMANDS).map(lambda c: c + b"\r\n"),
    st.binary(max_size=40),
    st.sampled_from([b"\r\n", b"\n", b"\r", b".\r\n", b"\r\n.\r\n", b"\x00", b"\xff"]),
)


def run_session(chunks: list[bytes]) -> bytes:
    server = Server(test_config(), [make_plugin(AcceptAll), make_plugin(MemoryQueue)])

    async def main() -> bytes:
        client, server_side = trio.testing.memory_stream_pair()
        session = Session(server_side, server.runtime, Peer("192.0.2.9", 1), Peer("127.0.0.1", 25))
        received = bytearray()

        async def reader() -> None:
            while data := await client.receive_some(65536):
                received.extend(data)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.run)
                nursery.start_soon(reader)
                try:
                    for chunk in chunks:
                        await client.send_all(chunk)
                        await trio.lowlevel.checkpoint()
                    await client.send_eof()
                except trio.BrokenResourceError:
                    pass  # the server hung up (QUIT, too many errors): fine
        return bytes(received)

    return trio.run(main)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.CRITICAL)
        self.records: list[logging.LogRecord] = []

    @override
    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@given(st.lists(pieces, max_size=40))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_input_gets_only_protocol_replies(chunks: list[bytes]) -> None:
    logger = logging.getLogger("tsmtp")
    collect = Collect()
    logger.addHandler(collect)
    try:
        output = run_session(chunks)
    finally:
        logger.removeHandler(collect)
    assert collect.records == []
    lines = output.split(b"\r\n")
    assert lines[-1] == b""
    for line in lines[:-1]:
        assert len(line) >= 3 and line[:3].isdigit() and line[3:4] in (b" ", b"-", b""), line
        assert 200 <= int(line[:3]) < 600
    assert lines[0].startswith(b"220 ")
