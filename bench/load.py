"""Load generators: smtp-source runs, a sequential latency client, idle sessions."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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
