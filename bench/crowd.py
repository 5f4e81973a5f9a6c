"""A hostile crowd of slow SMTP clients (helper for bench/run.py).

Holds ``--count`` connections to 127.0.0.1:``--port``, spread over ``--addresses``
loopback source addresses (127.0.1.2 to 127.0.1.251, then 127.0.2.2 ...; all of
127.0.0.0/8 is loopback on Linux), so that per-address limits see many clients.
Slot ``i`` uses address ``i % addresses`` and the behaviours of ``--modes`` in turn
(by default all three):

``trickle``
    after the greeting, sends a command (EHLO, then NOOPs) one byte every
    ``--interval`` seconds
``silent``
    says EHLO, then nothing
``data``
    EHLO, MAIL, RCPT, DATA, then trickles the message body one byte every
    ``--interval`` seconds and never sends the final dot

A slot whose connection the server closes, refuses or never answers connects
again after ``--reopen-delay`` seconds, as an attacker would, so the crowd
stays at ``--count``. New connections are paced to ``--max-rate`` per second,
at most ``--parallel`` are being set up at once, ``--max-connects`` bounds them
in all, and the crowd ends after ``--lifetime`` seconds whatever happens.

Talks to its parent over stdin/stdout: prints ``READY {json}`` once every slot
has made its first attempt (or after ``--ready-timeout``); answers each line
``STATS`` read on stdin with ``STATS {json}``; on EOF of stdin (or at the end
of its lifetime) closes every connection and prints ``DONE {json}``. The
counters are described in ``Crowd.snapshot``. Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import sys
from collections.abc import Iterator
from typing import Any

from idle_client import raise_nofile  # run as a script from bench/, like idle_client.py

MODES = ("trickle", "silent", "data")
HOST = "127.0.0.1"
HELO = b"EHLO crowd.invalid\r\n"
SENDER = b"MAIL FROM:<crowd@crowd.invalid>\r\n"
RECIPIENT = b"RCPT TO:<bench@example.com>\r\n"


def source_addresses(count: int) -> list[str]:
    """``count`` loopback addresses, 250 per /24, none of them 127.0.0.1."""
    return [f"127.0.{1 + i // 250}.{2 + i % 250}" for i in range(count)]


def trickle_bytes(mode: str) -> Iterator[bytes]:
    """The bytes a trickling slot sends, one at a time, for as long as it lives."""
    if mode == "trickle":
        stream: Iterator[int] = itertools.chain(HELO, itertools.cycle(b"NOOP\r\n"))
    else:  # a body that never ends: no line starts with a dot
        stream = itertools.chain(b"Subject: slow\r\n\r\n", itertools.cycle(b"x" * 70 + b"\r\n"))
    return (bytes((b,)) for b in stream)


class Refused(Exception):
    """The server answered with something other than the expected code."""


async def read_reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3])


async def command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes, expect: int
) -> None:
    writer.write(line)
    await writer.drain()
    if await read_reply(reader) != expect:
        raise Refused(line[:4].decode())


async def until_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(4096):
        pass


class Crowd:
    """The slots, their pacing, and the counters the parent reads."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.port: int = args.port
        self.count: int = args.count
        self.interval: float = args.interval
        self.reopen_delay: float = args.reopen_delay
        self.setup_timeout: float = args.setup_timeout
        self.max_connects: int = args.max_connects or 20 * args.count
        self.addresses = source_addresses(args.addresses)
        self.gap = 1.0 / args.max_rate
        self.next_start = 0.0
        self.setting_up = asyncio.Semaphore(args.parallel)
        self.first_pending = args.count
        self.first_done = asyncio.Event()
        # Set before the slots are cancelled: on Python 3.11 a cancellation that races with
        # a completing wait can be lost, and a slot that missed it must still stop.
        self.stopping = False
        # Counters (see snapshot).
        self.attempts = 0
        self.connect_failed = 0
        self.refused = 0
        self.setup_failed = 0
        self.server_closed = 0
        self.holding = 0
        self.peak_holding = 0
        self.modes: tuple[str, ...] = tuple(args.modes.split(","))
        self.holding_by_mode = dict.fromkeys(self.modes, 0)

    def snapshot(self) -> dict[str, Any]:
        """Counters since start.

        attempts: connections tried; connect_failed: refused or timed out at the TCP level;
        refused: greeted (or answered during setup) with something other than the expected
        2xx/3xx; setup_failed: closed or timed out before reaching its slow phase;
        holding: connections in their slow phase now (by behaviour in holding_by_mode);
        server_closed: connections the server closed while they were in their slow phase.
        """
        return {
            "count": self.count,
            "addresses": len(self.addresses),
            "attempts": self.attempts,
            "connect_failed": self.connect_failed,
            "refused": self.refused,
            "setup_failed": self.setup_failed,
            "server_closed": self.server_closed,
            "holding": self.holding,
            "peak_holding": self.peak_holding,
            "holding_by_mode": dict(self.holding_by_mode),
        }

    async def pace(self) -> bool:
        """Wait for this connection's turn under --max-rate; False once --max-connects is spent."""
        if self.stopping or self.attempts >= self.max_connects:
            return False
        self.attempts += 1
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(self.next_start, now)
        self.next_start = start + self.gap
        await asyncio.sleep(start - now)
        return True

    def settled_first(self) -> None:
        self.first_pending -= 1
        if self.first_pending == 0:
            self.first_done.set()

    async def slot(self, index: int) -> None:
        mode = self.modes[index % len(self.modes)]
        address = self.addresses[index % len(self.addresses)]
        first = True
        while await self.pace():
            await self.connection(mode, address, first)
            first = False
            await asyncio.sleep(self.reopen_delay * random.uniform(0.5, 1.5))
        if first:
            self.settled_first()

    async def connection(self, mode: str, address: str, first: bool) -> None:
        async with self.setting_up:
            try:
                async with asyncio.timeout(self.setup_timeout):
                    reader, writer = await asyncio.open_connection(
                        HOST, self.port, local_addr=(address, 0)
                    )
            except (OSError, TimeoutError):
                self.connect_failed += 1
                if first:
                    self.settled_first()
                return
            try:
                async with asyncio.timeout(self.setup_timeout):
                    await self.setup(mode, reader, writer)
            except Refused:
                self.refused += 1
                writer.close()
                if first:
                    self.settled_first()
                return
            except (
                OSError,
                ConnectionError,
                ValueError,
                TimeoutError,
                asyncio.IncompleteReadError,
            ):
                self.setup_failed += 1
                writer.close()
                if first:
                    self.settled_first()
                return
        self.holding += 1
        self.holding_by_mode[mode] += 1
        self.peak_holding = max(self.peak_holding, self.holding)
        if first:
            self.settled_first()
        try:
            if await self.slow_phase(mode, reader, writer):
                self.server_closed += 1
        except (OSError, ConnectionError):
            self.server_closed += 1
        finally:
            self.holding -= 1
            self.holding_by_mode[mode] -= 1
            writer.close()

    async def setup(
        self, mode: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if await read_reply(reader) != 220:
            raise Refused("greeting")
        if mode == "trickle":
            return
        await command(reader, writer, HELO, 250)
        if mode == "data":
            await command(reader, writer, SENDER, 250)
            await command(reader, writer, RECIPIENT, 250)
            await command(reader, writer, b"DATA\r\n", 354)

    async def slow_phase(
        self, mode: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """True once the server has closed the connection, False when the crowd stops."""
        closed = asyncio.create_task(until_eof(reader))
        trickle = None if mode == "silent" else trickle_bytes(mode)
        # A random first pause, so that the crowd's bytes do not arrive in bursts.
        pause = self.interval * random.random()
        try:
            while not self.stopping:
                done, _ = await asyncio.wait({closed}, timeout=pause)
                if done:
                    return True
                if trickle is not None:
                    writer.write(next(trickle))
                    await writer.drain()
                pause = self.interval
            return False
        finally:
            closed.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionError):
                await closed


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def emit(tag: str, data: dict[str, Any]) -> None:
    print(f"{tag} {json.dumps(data)}", flush=True)


async def main() -> None:
    ap = argparse.ArgumentParser(description="hostile crowd of slow SMTP clients (loopback)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--addresses", type=int, default=500)
    ap.add_argument("--modes", default=",".join(MODES), help="behaviours taken in turn")
    ap.add_argument("--interval", type=float, default=2.0, help="seconds between trickled bytes")
    ap.add_argument("--reopen-delay", type=float, default=1.0)
    ap.add_argument("--max-rate", type=float, default=2000.0, help="new connections per second")
    ap.add_argument("--max-connects", type=int, default=0, help="in all (default 20 x count)")
    ap.add_argument("--parallel", type=int, default=200, help="connections in setup at once")
    ap.add_argument("--setup-timeout", type=float, default=30.0)
    ap.add_argument("--ready-timeout", type=float, default=60.0)
    ap.add_argument("--lifetime", type=float, default=180.0, help="seconds; then exit anyway")
    args = ap.parse_args()
    if not 1 <= args.addresses <= 250 * 254:
        ap.error("--addresses out of range")
    if not args.modes or not set(args.modes.split(",")) <= set(MODES):
        ap.error(f"--modes: a comma-separated list of {', '.join(MODES)}")
    if args.count < 1 or args.max_rate <= 0:
        ap.error("--count and --max-rate must be positive")
    raise_nofile(args.count + 1024)

    loop = asyncio.get_running_loop()
    end = loop.time() + args.lifetime
    crowd = Crowd(args)
    commands = await stdin_lines()
    slots = [asyncio.create_task(crowd.slot(i)) for i in range(args.count)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(crowd.first_done.wait(), min(args.ready_timeout, args.lifetime))
    emit("READY", crowd.snapshot())
    while True:
        try:
            line = await asyncio.wait_for(commands.readline(), max(0.0, end - loop.time()))
        except TimeoutError:
            break
        if not line:
            break
        if line.strip() == b"STATS":
            emit("STATS", crowd.snapshot())
    crowd.stopping = True
    pending = set(slots)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)
    emit("DONE", crowd.snapshot())


if __name__ == "__main__":
    asyncio.run(main())
