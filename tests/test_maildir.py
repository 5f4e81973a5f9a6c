"""queue.maildir's group commit: shared flushes, never a 250 before the covering flush."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import trio
import trio.testing

from tsmtp import Plugin
from tsmtp.loader import config_type_of, find_plugin_class
from tsmtp.testing import ClientReply, RunningServer, make_plugin, running_server

from .helpers import AcceptAll


def maildir_module() -> ModuleType:
    cls = find_plugin_class("queue.maildir", [])
    return sys.modules[cls.__module__]


class Recorder:
    """A flush that records when it ran, and can be told to fail."""

    def __init__(self) -> None:
        self.runs: list[tuple[float, float]] = []
        self.fail = False
        self.lock = threading.Lock()

    def __call__(self) -> None:
        start = time.monotonic()
        time.sleep(0.02)
        with self.lock:
            self.runs.append((start, time.monotonic()))
        if self.fail:
            raise OSError(5, "simulated I/O error")


async def test_concurrent_waiters_share_flushes_that_started_after_them() -> None:
    recorder = Recorder()
    commit = maildir_module().GroupCommit(recorder)
    called: dict[int, float] = {}
    returned: dict[int, float] = {}

    async def one(i: int) -> None:
        await trio.sleep(i * 0.001)
        called[i] = time.monotonic()
        await commit.wait()
        returned[i] = time.monotonic()

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(one, i)
    assert len(returned) == 50
    assert len(recorder.runs) < 10  # 50 waiters, a handful of flushes
    for i in range(50):
        # some flush started after the call and ended before the return
        assert any(called[i] <= s and e <= returned[i] for s, e in recorder.runs), i


async def test_a_failed_flush_fails_its_waiters_only() -> None:
    recorder = Recorder()
    commit = maildir_module().GroupCommit(recorder)
    recorder.fail = True
    with pytest.raises(OSError, match="simulated"):
        await commit.wait()
    recorder.fail = False
    await commit.wait()


@pytest.mark.parametrize("sync", ["batch", "file"])
async def test_messages_are_stored_with_either_sync_mode(tmp_path: Path, sync: str) -> None:
    cls = find_plugin_class("queue.maildir", [])
    settings = config_type_of(cls)(path=str(tmp_path / "md"), sync=sync)  # type: ignore[call-arg]
    plugin = make_plugin(cls, name="queue.maildir", config=settings)
    async with running_server([AcceptAll, plugin]) as srv:

        async def one(i: int) -> None:
            c = await srv.connect()
            await c.command("EHLO x")
            await c.command("MAIL FROM:<a@b.c>")
            await c.command("RCPT TO:<r@d.e>")
            await c.command("DATA")
            assert (await c.command(f"message {i}\r\n.")).code == 250

        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(one, i)
    assert len(list((tmp_path / "md" / "new").iterdir())) == 30
    assert list((tmp_path / "md" / "tmp").iterdir()) == []


class HangingFlush:
    """A flush that does not return until released: a disk that stops answering."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        self.entered.set()
        # Bounded, so that a broken test cannot keep a worker thread forever.
        self.release.wait(10)


class PauseAfterRename:
    """Wraps ``write_message``: the message is in ``new/``, then the write thread waits."""

    def __init__(self, write: Callable[..., str]) -> None:
        self.write = write
        self.renamed = threading.Event()
        self.resume = threading.Event()

    def __call__(self, *args: object) -> str:
        path = self.write(*args)
        self.renamed.set()
        self.resume.wait(10)
        return path


def maildir_plugin(path: Path, module: ModuleType | None = None, **settings: object) -> Plugin:
    module = module or maildir_module()
    config = module.MaildirConfig(path=str(path), **settings)
    plugin: Plugin = make_plugin(module.Maildir, name="queue.maildir", config=config)
    return plugin


def flushing_with(flush: Callable[[], None]) -> ModuleType:
    """A fresh import of queue.maildir whose two sync modes both flush with ``flush``."""
    module = maildir_module()  # fresh, so replacing its functions touches no other test
    vars(module).update(_filesystem_sync=lambda path: flush, _fsync_path=lambda path: flush())
    return module


async def send_message(srv: RunningServer, text: str) -> ClientReply:
    client = await srv.connect()
    await client.command("EHLO client.test")
    assert (await client.command("MAIL FROM:<a@client.test>")).code == 250
    assert (await client.command("RCPT TO:<r@example.org>")).code == 250
    assert (await client.command("DATA")).code == 354
    return await client.command(f"Subject: {text}\r\n\r\n{text}\r\n.")


def assert_cut_by_the_timeout(reply: ClientReply | None, maildir: Path) -> None:
    assert reply is not None and reply.code == 451 and "timeout" in reply.text.lower()
    assert list((maildir / "new").iterdir()) == []
    assert list((maildir / "tmp").iterdir()) == []


async def test_waits_for_a_flush_cut_by_the_plugin_timeout_leave_nothing_in_new(
    tmp_path: Path, autojump_clock: object
) -> None:
    # The first message starts the flush that hangs; the others wait for a flush that starts
    # after theirs. Every one of them is cut by the timeout, none may stay in new/.
    flush = HangingFlush()
    plugin = maildir_plugin(tmp_path / "md", flushing_with(flush), timeout=5)
    replies: list[ClientReply] = []
    async with running_server([AcceptAll, plugin]) as srv:
        try:

            async def one(i: int) -> None:
                with trio.fail_after(60):
                    replies.append(await send_message(srv, f"message {i}"))

            async with trio.open_nursery() as nursery:
                for i in range(3):
                    nursery.start_soon(one, i)
            assert len(replies) == 3
            for reply in replies:
                assert_cut_by_the_timeout(reply, tmp_path / "md")
            assert flush.calls <= 1  # one flush for all three, hanging (or not yet begun)
        finally:
            flush.release.set()


@pytest.mark.parametrize("cut_while", ["writing", "flushing"])
async def test_a_message_cut_by_the_plugin_timeout_after_its_rename_leaves_nothing_in_new(
    tmp_path: Path, mock_clock: trio.testing.MockClock, cut_while: str
) -> None:
    # sync = "file" writes in a worker thread, which a timeout cannot interrupt: the message
    # reaches new/ after the deadline, and must be taken out again.
    flush = HangingFlush()
    module = flushing_with(flush)
    pause = PauseAfterRename(module.write_message)
    if cut_while == "writing":
        vars(module)["write_message"] = pause
        flush.release.set()
    else:
        pause.resume.set()
    plugin = maildir_plugin(tmp_path / "md", module, sync="file", timeout=5)
    reply: ClientReply | None = None
    async with running_server([AcceptAll, plugin]) as srv:
        try:

            async def send() -> None:
                nonlocal reply
                reply = await send_message(srv, "cut")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                reached = pause.renamed if cut_while == "writing" else flush.entered
                assert await trio.to_thread.run_sync(reached.wait, 10)
                mock_clock.jump(6)
                pause.resume.set()
            assert_cut_by_the_timeout(reply, tmp_path / "md")
        finally:
            pause.resume.set()
            flush.release.set()


async def test_a_failed_flush_answers_451_and_leaves_nothing_in_new(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.fail = True
    plugin = maildir_plugin(tmp_path / "md", flushing_with(recorder))
    async with running_server([AcceptAll, plugin]) as srv:
        reply = await send_message(srv, "lost")
        assert reply.code == 451 and "safely" in reply.text
        assert list((tmp_path / "md" / "new").iterdir()) == []
        recorder.fail = False
        assert (await send_message(srv, "kept")).code == 250
    assert len(list((tmp_path / "md" / "new").iterdir())) == 1


async def test_a_cancelled_waiter_leaves_the_flush_running_for_the_others() -> None:
    flush = HangingFlush()
    commit = maildir_module().GroupCommit(flush)
    returned: list[str] = []

    async def patient() -> None:
        await commit.wait()
        returned.append("patient")

    async def start_patient_then_cancel(scope: trio.CancelScope) -> None:
        await trio.to_thread.run_sync(flush.entered.wait)
        nursery.start_soon(patient)
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()

    with trio.fail_after(5):  # a safety bound: nothing here waits for time to pass
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as impatient:
                nursery.start_soon(start_patient_then_cancel, impatient)
                await commit.wait()  # starts the flush that hangs, and is cancelled in it
            assert impatient.cancelled_caught
            assert returned == [] and flush.calls == 1
            flush.release.set()
        assert returned == ["patient"]  # once the first flush ended, a second one covered it
        await commit.wait()  # a later waiter gets a flush of its own
    assert flush.calls == 3


async def test_unfinished_files_older_than_36_hours_are_removed_from_tmp_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    maildir = tmp_path / "md"
    plugin = maildir_plugin(maildir)
    now = time.time()
    hours = 3600
    ages = {
        ("tmp", "stale"): 37 * hours,
        ("tmp", "just-stale"): 36 * hours + 60,
        ("tmp", "young"): 35 * hours,
        ("tmp", "being-written"): 0,
        ("new", "delivered-long-ago"): 40 * 24 * hours,  # only tmp/ holds unfinished writes
        ("cur", "read-long-ago"): 40 * 24 * hours,
    }
    for (sub, name), age in ages.items():
        path = maildir / sub / name
        path.write_bytes(b"Subject: x\r\n\r\nx\r\n")
        os.utime(path, (now - age, now - age))
    (maildir / "tmp" / "a-directory").mkdir()
    os.utime(maildir / "tmp" / "a-directory", (now - 40 * hours, now - 40 * hours))
    with caplog.at_level(logging.INFO, logger="tsmtp"):
        async with running_server([AcceptAll, plugin]) as srv:
            remaining = sorted(p.name for p in (maildir / "tmp").iterdir())
            assert remaining == ["a-directory", "being-written", "young"]
            assert (await send_message(srv, "after the cleanup")).code == 250
    assert "removed 2 unfinished file(s) older than 36 hours" in caplog.text
    assert (maildir / "new" / "delivered-long-ago").exists()
    assert (maildir / "cur" / "read-long-ago").exists()
    assert len(list((maildir / "new").iterdir())) == 2
