"""Load generators: smtp-source runs, a latency client, idle sessions, the hostile crowd."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import procs

SMTP_SOURCE = os.environ.get("SMTP_SOURCE", "/usr/sbin/smtp-source")
SENDER = "sender@example.com"
RECIPIENT = "bench@example.com"
CLIENT_NAME = "bench.client"
HERE = Path(__file__).resolve().parent


@dataclass
class SourceRun:
    ok: bool
    messages: int
    seconds: float
    error: str = ""

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.ok and self.seconds > 0 else 0.0


def smtp_source(
    port: int,
    *,
    sessions: int,
    messages: int,
    length: int,
    reuse: bool,
    timeout: float,
) -> SourceRun:
    """Run smtp-source once against 127.0.0.1:port and time it.

    ``reuse`` adds ``-d``: each session keeps its connection and sends its
    share of the messages over it instead of reconnecting per message.
    smtp-source exits non-zero on any unexpected reply, so a zero exit
    means all ``messages`` were acknowledged with 250.
    """
    argv = [
        SMTP_SOURCE,
        "-s", str(sessions),
        "-m", str(messages),
        "-l", str(length),
        "-f", SENDER,
        "-t", RECIPIENT,
        "-M", CLIENT_NAME,
    ]  # fmt: skip
    if reuse:
        argv.append("-d")
    argv.append(f"127.0.0.1:{port}")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return SourceRun(False, messages, time.perf_counter() - t0, f"timeout after {timeout:.0f}s")
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        text = (err or out).decode(errors="replace").strip().splitlines()
        return SourceRun(False, messages, elapsed, text[-1] if text else f"rc={proc.returncode}")
    return SourceRun(True, messages, elapsed)


# --- sequential latency client ------------------------------------------------


class SMTPError(Exception):
    pass


class LineClient:
    """Minimal blocking SMTP client: one command, one (possibly multi-line) reply."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def reply(self) -> tuple[int, str]:
        lines: list[str] = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise SMTPError(f"connection closed; got {lines!r}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            text = line.decode("latin-1")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return int(text[:3]), "\n".join(lines)

    def command(self, data: bytes, expect: int) -> str:
        self.sock.sendall(data)
        code, text = self.reply()
        if code != expect:
            raise SMTPError(f"{data[:20]!r} -> {text}")
        return text

    def close(self) -> None:
        with contextlib.suppress(OSError, SMTPError):
            self.command(b"QUIT\r\n", 221)
        self.sock.close()


def make_message(size: int, seq: int) -> bytes:
    """A dot-safe message of about ``size`` body bytes, CRLF line endings."""
    head = (
        f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: latency probe {seq}\r\n"
        f"Message-Id: <lat.{seq}.{os.getpid()}@{CLIENT_NAME}>\r\n\r\n"
    ).encode()
    line = b"x" * 78 + b"\r\n"
    body = line * max(1, size // len(line))
    return head + body


@dataclass
class LatencyRun:
    ok: bool
    count: int
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    error: str = ""


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency(port: int, *, count: int, warmup: int, size: int = 1024) -> LatencyRun:
    """Time ``count`` sequential MAIL/RCPT/DATA transactions on one session.

    Each sample runs from sending MAIL FROM to reading the 250 after the
    final dot; ``warmup`` transactions before them are not timed.
    """
    acked = 0
    samples: list[float] = []
    try:
        c = LineClient(port)
    except OSError as exc:
        return LatencyRun(False, 0, error=str(exc))
    try:
        c.reply()
        c.command(f"EHLO {CLIENT_NAME}\r\n".encode(), 250)
        for i in range(warmup + count):
            msg = make_message(size, i)
            t0 = time.perf_counter_ns()
            c.command(f"MAIL FROM:<{SENDER}>\r\n".encode(), 250)
            c.command(f"RCPT TO:<{RECIPIENT}>\r\n".encode(), 250)
            c.command(b"DATA\r\n", 354)
            c.command(msg + b".\r\n", 250)
            t1 = time.perf_counter_ns()
            acked += 1
            if i >= warmup:
                samples.append((t1 - t0) / 1e6)
    except (OSError, SMTPError) as exc:
        return LatencyRun(False, acked, error=str(exc)[:200])
    finally:
        c.close()
    return LatencyRun(
        True,
        acked,
        p50_ms=statistics.median(samples),
        p99_ms=percentile(samples, 99),
    )


# --- idle sessions --------------------------------------------------------------


@dataclass
class IdleSessions:
    """A helper process holding ``count`` sessions open after EHLO."""

    proc: subprocess.Popen[str]
    opened: int
    failed: int
    error: str = ""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def open_idle(port: int, count: int, timeout: float) -> IdleSessions:
    """Start idle_client.py and wait until it reports its sessions are open."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "idle_client.py"), "--port", str(port), "--count", str(count),
         "--timeout", str(timeout)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if len(line) >= 3 and line[0] == "READY":
        return IdleSessions(proc, int(line[1]), int(line[2]))
    err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
    idle = IdleSessions(proc, 0, count, error=(" ".join(line) + " " + err).strip()[-300:])
    idle.close()
    return idle


# --- legitimate senders for the hostile-crowd scenario ------------------------------


@dataclass
class MailerRun:
    """What ``send_for`` saw: 250s after the final dot, and how the other attempts ended."""

    seconds: float
    acked: int  # 250s after the final dot that arrived within the window
    acked_late: int  # 250s for transactions still in flight when the window closed
    failures: dict[str, int]
    samples_ms: list[float]  # connect to the 250 for the message, per acked message
    acked_at: list[float]  # seconds from the start of the window, per acked message

    @property
    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds > 0 else 0.0

    @property
    def total_acked(self) -> int:
        return self.acked + self.acked_late


class _Failed(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class _Mailers:
    """Clients on 127.0.0.1 that send one message per connection until a deadline."""

    def __init__(self, port: int, size: int, step_timeout: float) -> None:
        self.port = port
        self.size = size
        self.step_timeout = step_timeout
        self.failures: dict[str, int] = {}
        self.samples: list[float] = []
        self.acked_at: list[float] = []
        self.start = 0.0
        self.acked = 0
        self.late = 0

    async def reply(self, reader: asyncio.StreamReader) -> int:
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), self.step_timeout)
            except TimeoutError:
                raise _Failed("timeout") from None
            if not line:
                raise _Failed("closed")
            if len(line) < 4 or line[3:4] != b"-":
                try:
                    return int(line[:3])
                except ValueError:
                    raise _Failed("garbled reply") from None

    async def step(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes, code: int
    ) -> None:
        writer.write(data)
        await writer.drain()
        got = await self.reply(reader)
        if got != code:
            raise _Failed(f"{got} to {data[:4].decode(errors='replace').strip() or 'dot'}")

    async def one_message(self, message: bytes) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port), self.step_timeout
            )
        except TimeoutError:
            raise _Failed("connect timeout") from None
        except OSError:
            raise _Failed("connect refused") from None
        try:
            greeting = await self.reply(reader)
            if greeting != 220:
                raise _Failed(f"{greeting} greeting")
            await self.step(reader, writer, f"EHLO {CLIENT_NAME}\r\n".encode(), 250)
            await self.step(reader, writer, f"MAIL FROM:<{SENDER}>\r\n".encode(), 250)
            await self.step(reader, writer, f"RCPT TO:<{RECIPIENT}>\r\n".encode(), 250)
            await self.step(reader, writer, b"DATA\r\n", 354)
            # The 250 is for the message, whatever happens to the QUIT after it.
            await self.step(reader, writer, message + b".\r\n", 250)
        except (ConnectionError, OSError):
            writer.close()
            raise _Failed("reset") from None
        with contextlib.suppress(OSError, ConnectionError, _Failed):
            writer.write(b"QUIT\r\n")
            await self.reply(reader)
        writer.close()

    async def session(self, index: int, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        for seq in itertools.count():
            if loop.time() >= deadline:
                return
            t0 = loop.time()
            try:
                await self.one_message(make_message(self.size, index * 1_000_000 + seq))
            except _Failed as exc:
                self.failures[exc.kind] = self.failures.get(exc.kind, 0) + 1
                await asyncio.sleep(0.05)  # a refusing server is not a busy loop
                continue
            t1 = loop.time()
            if t1 <= deadline:
                self.acked += 1
                self.samples.append((t1 - t0) * 1000)
                self.acked_at.append(t1 - self.start)
            else:
                self.late += 1

    async def run(self, sessions: int, seconds: float) -> MailerRun:
        self.start = asyncio.get_running_loop().time()
        deadline = self.start + seconds
        await asyncio.gather(*(self.session(i, deadline) for i in range(sessions)))
        return MailerRun(seconds, self.acked, self.late, self.failures, self.samples, self.acked_at)


def send_for(
    port: int, *, sessions: int, seconds: float, size: int = 1024, step_timeout: float = 10.0
) -> MailerRun:
    """``sessions`` clients on 127.0.0.1 send one message per connection for ``seconds``.

    Each connection runs EHLO, MAIL, RCPT, DATA, the message and QUIT; each step waits
    at most ``step_timeout`` for its reply. A connection that fails before the 250 for
    the message is counted by how it failed (in ``failures``) and the client tries
    again 50 ms later. Transactions in flight when the window closes finish; their
    250s count in ``acked_late`` only, not in the rate.
    """
    return asyncio.run(_Mailers(port, size, step_timeout).run(sessions, seconds))


# --- the hostile crowd ----------------------------------------------------------------


@dataclass
class CrowdProcess:
    """A running crowd.py: its counters when it was ready, and on request."""

    proc: subprocess.Popen[str]
    ready: dict[str, Any]
    error: str = ""
    done: dict[str, Any] = field(default_factory=dict)

    def _line(self, tag: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        head, _, body = line.partition(" ")
        if head != tag:
            raise RuntimeError(f"crowd.py said {line.strip()[:200]!r}, wanted {tag}")
        data: dict[str, Any] = json.loads(body)
        return data

    def cpu_seconds(self) -> float:
        return procs.cpu_seconds([self.proc.pid])

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("STATS\n")
        self.proc.stdin.flush()
        return self._line("STATS")

    def close(self) -> dict[str, Any]:
        """Close every crowd connection and wait for the process; its final counters."""
        with contextlib.suppress(OSError):
            if self.proc.stdin:
                self.proc.stdin.close()
        try:  # the DONE line fits in the pipe, so the crowd exits without being read
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.error = "crowd.py did not stop in 30 s; killed"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        assert self.proc.stdout is not None
        for line in self.proc.stdout.read().splitlines():
            head, _, body = line.partition(" ")
            if head == "DONE":
                self.done = json.loads(body)
        return self.done


def open_crowd(
    port: int,
    count: int,
    *,
    addresses: int,
    lifetime: float,
    log_path: Path,
    modes: str | None = None,
) -> CrowdProcess:
    """Start crowd.py and wait until every slot has made its first connection attempt.

    Its stderr goes to ``log_path``; ``modes`` is its ``--modes`` (default: all three).
    """
    argv = [sys.executable, str(HERE / "crowd.py"), "--port", str(port), "--count", str(count),
            "--addresses", str(addresses), "--lifetime", str(lifetime)]  # fmt: skip
    if modes:
        argv += ["--modes", modes]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )  # fmt: skip
    crowd = CrowdProcess(proc, {})
    try:
        crowd.ready = crowd._line("READY")
    except (RuntimeError, ValueError) as exc:
        crowd.close()
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
        crowd.error = f"{exc} {' '.join(tail)}".strip()[-300:]
    return crowd
