"""Store each message in a Maildir; the 250 is sent only once the message is on disk.

A message is written to ``tmp/`` and renamed into ``new/``; then it waits for a flush to disk
that started after its rename. Messages arriving together share one flush (group commit):

- ``sync = "batch"`` (default): one ``syncfs`` of the Maildir's filesystem covers every message
  written meanwhile, files and directory entries alike (Linux; elsewhere a full ``sync``).
- ``sync = "file"``: each file is fsync'd on its own, and the ``new/`` directory once per batch.

Either way no 250 is sent before the flush that covers the message has returned; a failed
flush answers 451 and the client tries again. Relative paths are taken from the working
directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import itertools
import os
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import trio

from tsmtp import Connection, Outcome, Plugin, PluginConfig, Verdict, override


class MaildirConfig(PluginConfig, kw_only=True, frozen=True):
    #: The Maildir (``tmp``, ``new`` and ``cur`` are created in it).
    path: str = "var/mail"
    #: Flush messages to disk before answering 250 (turn off only for throwaway mail).
    fsync: bool = True
    #: How messages reach the disk: "batch" (one filesystem sync per group) or "file".
    sync: Literal["batch", "file"] = "batch"


_counter = itertools.count()
_HOST = socket.gethostname().replace("/", "_").replace(":", "_")
#: Messages smaller than this are written without a worker thread (page cache only).
_INLINE_WRITE = 64 * 1024


def unique_name(size: int) -> str:
    now = time.time()
    seconds, micro = int(now), int((now % 1) * 1_000_000)
    return f"{seconds}.M{micro}P{os.getpid()}Q{next(_counter)}.{_HOST},S={size}"


def write_message(root: str, chunks: Iterable[bytes], size: int, fsync: bool) -> str:
    """Write one message into the Maildir at ``root``; return its path in ``new/``."""
    name = unique_name(size)
    tmp = f"{root}/tmp/{name}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        final = f"{root}/new/{name}"
        os.rename(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return final


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _filesystem_sync(path: Path) -> Callable[[], None]:
    """A function flushing the whole filesystem holding ``path`` (syncfs, or sync)."""
    libc_name = ctypes.util.find_library("c")
    syncfs = getattr(ctypes.CDLL(libc_name, use_errno=True), "syncfs", None) if libc_name else None
    if syncfs is None:
        return os.sync

    def flush() -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if syncfs(fd) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"syncfs: {os.strerror(errno)}")
        finally:
            os.close(fd)

    return flush


class GroupCommit:
    """Calls to :meth:`wait` share runs of ``flush`` (in a worker thread).

    ``wait`` returns once a flush that *started after the call* has finished, so everything
    written before the call is covered; it raises if that flush failed.
    """

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush
        self._started = 0
        self._finished = 0
        self._running = False
        self._changed = trio.Event()
        self._failed: dict[int, OSError] = {}

    async def wait(self) -> None:
        target = self._started + 1
        while self._finished < target:
            if self._running:
                await self._changed.wait()
                continue
            self._running = True
            self._started += 1
            generation = self._started
            try:
                await trio.to_thread.run_sync(self._flush)
            except OSError as exc:
                self._failed[generation] = exc
            finally:
                self._running = False
                self._finished = generation
                self._failed.pop(generation - 1000, None)
                changed, self._changed = self._changed, trio.Event()
                changed.set()
        error = self._failed.get(target)
        if error is not None:
            raise error


class Maildir(Plugin):
    config: MaildirConfig

    @override
    def register(self) -> None:
        self.root = Path(self.config.path).absolute()
        for sub in ("tmp", "new", "cur"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        per_file = self.config.sync == "file"
        self._fsync_each = self.config.fsync and per_file
        new = self.root / "new"
        flush = (lambda: _fsync_path(new)) if per_file else _filesystem_sync(new)
        self._commit = GroupCommit(flush) if self.config.fsync else None

    @override
    async def hook_queue(self, connection: Connection) -> Outcome:
        txn = connection.transaction
        if txn is None:
            return Verdict.CONT
        size = txn.message_size()
        args = (str(self.root), txn.message_chunks(), size, self._fsync_each)
        if size < _INLINE_WRITE and txn.body.in_memory and not self._fsync_each:
            path = write_message(*args)  # a small write to the page cache: no thread needed
        else:
            path = await trio.to_thread.run_sync(write_message, *args)
        if self._commit is not None:
            try:
                await self._commit.wait()
            except OSError as exc:
                self.logerror(f"flushing {path} to disk failed: {exc}", connection)
                with contextlib.suppress(OSError):
                    os.unlink(path)  # the client will send it again
                return Verdict.DENYSOFT("Could not store the message safely, try again later")
        self.loginfo("stored %s", connection, path)
        return Verdict.OK
