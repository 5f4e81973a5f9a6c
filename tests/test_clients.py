"""Real clients (smtplib, swaks) and real files: what a 250 promises is on disk."""

from __future__ import annotations

import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest
import trio

from tsmtp import Plugin, ServerContext
from tsmtp.loader import config_type_of, find_plugin_class
from tsmtp.testing import make_plugin, running_server, test_config

from .helpers import AcceptAll, MemoryQueue, body_after_received

REPO = Path(__file__).resolve().parent.parent


def maildir_plugin(path: Path, context: ServerContext | None = None) -> Plugin:
    cls = find_plugin_class("queue.maildir", [])
    settings = config_type_of(cls)
    return make_plugin(cls, name="queue.maildir", config=settings(path=str(path)), server=context)  # type: ignore[call-arg]


def stored(maildir: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((maildir / "new").iterdir())]


async def test_smtplib_message_lands_in_the_maildir_byte_for_byte(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    async with running_server([AcceptAll, maildir_plugin(maildir)]) as srv:
        msg = EmailMessage()
        msg["From"] = "sender@example.org"
        msg["To"] = "rcpt@example.com"
        msg["Subject"] = "smtplib"
        msg.set_content("line one\n.leading dot\n\nlast line\n")

        def send() -> dict[str, tuple[int, bytes]]:
            with smtplib.SMTP(srv.host, srv.port, timeout=10) as client:
                return client.send_message(msg)

        refused = await trio.to_thread.run_sync(send)
        assert refused == {}
    [message] = stored(maildir)
    wire = msg.as_bytes().replace(b"\n", b"\r\n")
    assert body_after_received(message) == wire
    assert list((maildir / "tmp").iterdir()) == []


async def test_smtplib_sees_refusals_and_extensions() -> None:
    async with running_server([AcceptAll, MemoryQueue]) as srv:

        def talk() -> tuple[int, bool, bool, int]:
            with smtplib.SMTP(srv.host, srv.port, timeout=10) as client:
                client.ehlo("me.example")
                code, _ = client.mail("bad@")
                client.rset()
                return (
                    code,
                    client.has_extn("pipelining"),
                    client.has_extn("smtputf8"),
                    int(client.esmtp_features["size"]),
                )

        code, pipelining, utf8, size = await trio.to_thread.run_sync(talk)
        assert (code, pipelining, utf8, size) == (501, True, True, 25 * 1024 * 1024)


needs_swaks = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")


@needs_swaks
@pytest.mark.parametrize("pipeline", [False, True])
async def test_swaks_delivers_to_maildir(tmp_path: Path, pipeline: bool) -> None:
    maildir = tmp_path / "Maildir"
    async with running_server([AcceptAll, maildir_plugin(maildir)]) as srv:
        args = ["swaks", "--server", f"{srv.host}:{srv.port}", "--to", "a@example.com"]
        args += ["--from", "s@example.org", "--header", "Subject: via swaks", "--body", "hello"]
        if pipeline:
            args.append("--pipeline")
        done = await trio.run_process(args, capture_stdout=True, capture_stderr=True, check=False)
        assert done.returncode == 0, done.stdout.decode()
        assert b"<-  250 2.0.0 Message queued as" in done.stdout
    [message] = stored(maildir)
    assert b"Subject: via swaks\r\n" in message
    assert message.startswith(b"Received: from ")


async def test_two_hundred_concurrent_clients_each_get_their_message_through(
    tmp_path: Path,
) -> None:
    maildir = tmp_path / "Maildir"
    count = 200
    config = test_config()
    async with running_server([AcceptAll, maildir_plugin(maildir)], config=config) as srv:
        codes: list[int] = []

        async def one(i: int) -> None:
            c = await srv.connect()
            await c.command("EHLO c")
            await c.send(f"MAIL FROM:<s{i}@x.y>\r\nRCPT TO:<r{i}@d.e>\r\nDATA\r\n")
            for _ in range(3):
                await c.read_reply()
            reply = await c.command(f"Subject: message {i}\r\n\r\nbody {i}\r\n.")
            codes.append(reply.code)
            await c.command("QUIT")

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for i in range(count):
                    nursery.start_soon(one, i)
    assert codes == [250] * count
    messages = stored(maildir)
    assert len(messages) == count
    subjects = {re.search(rb"Subject: message (\d+)", m)[1] for m in messages}  # type: ignore[index]
    assert subjects == {str(i).encode() for i in range(count)}


async def test_a_large_message_is_spooled_to_disk_and_stored_intact(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    line = b"0123456789" * 7 + b"\r\n"
    body = b"Subject: big\r\n\r\n" + line * (3 * 1024 * 1024 // len(line))
    async with running_server([AcceptAll, maildir_plugin(maildir)]) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        await c.command("MAIL FROM:<a@b.c>")
        await c.command("RCPT TO:<r@d.e>")
        await c.command("DATA")
        await c.send(body)
        assert (await c.command(".")).code == 250
    [message] = stored(maildir)
    assert body_after_received(message) == body


def start_cli(cwd: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tsmtp", "run", *args],
        cwd=cwd,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if match:
            return proc, int(match[1])
    raise AssertionError(f"server did not start (exit {proc.wait()})")


@needs_swaks
def test_cli_runs_the_bundled_config_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    proc, port = start_cli(tmp_path, "--config", str(REPO / "config"), "--listen", "127.0.0.1:0")
    try:
        done = subprocess.run(
            ["swaks", "--server", f"127.0.0.1:{port}", "--to", "a@example.com"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout
        refused = subprocess.run(
            ["swaks", "--server", f"127.0.0.1:{port}", "--to", "a@elsewhere.org"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "550 5.7.1 <a@elsewhere.org>: I cannot deliver for that user" in refused.stdout
        new = list((tmp_path / "var" / "mail" / "new").iterdir())
        assert len(new) == 1
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
