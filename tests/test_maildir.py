"""queue.maildir's group commit: shared flushes, never a 250 before the covering flush."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest
import trio

from tsmtp.plugins import bundled_plugin_dir, config_type_of, find_plugin_class
from tsmtp.testing import make_plugin, running_server

from .helpers import AcceptAll


def maildir_module() -> ModuleType:
    cls = find_plugin_class("queue.maildir", [bundled_plugin_dir()])
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
    cls = find_plugin_class("queue.maildir", [bundled_plugin_dir()])
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
