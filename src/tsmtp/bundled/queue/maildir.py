"""Store each message in a Maildir; the 250 is sent only once the message is on disk.

A message is written to ``tmp/`` and renamed into ``new/``; then it waits for a flush to disk
that started after its rename. Messages arriving together share one flush (group commit):

- ``sync = "batch"`` (default): one ``syncfs`` of the Maildir's filesystem covers every message
  written meanwhile, files and directory entries alike (Linux; elsewhere a full ``sync``).
- ``sync = "file"``: each file is fsync'd on its own, and the ``new/`` directory once per batch.

Either way no 250 is sent before the flush that covers the message has returned.

A file stays in ``new/`` only if the hook returns OK: whatever else ends it (a failed flush, the
plugin timeout, the client going away, a bug) removes the file before the client can hear a
4xx, so the client's retry does not store the message twice. The timeout is allowed to cut the
wait for a flush: the timeout is the administrator's bound on how long a message may wait for
its reply, and the flush itself runs on in its thread for the other messages. (Shielding the
wait instead would overrun that bound, hold up the connection's own cancellation, and still need
the removal once its own deadline passed.) The removal needs no flush of its own: while the
system runs, every reader sees it at once; only a crash can bring the file back, and then the
client never heard 250, so its retry storing a second copy is the at-least-once delivery any
crash between storing and replying gives.

When the server starts, files left in ``tmp/`` by writes that never finished (a crash) are
removed once they are 36 hours old, the Maildir convention. Relative paths are taken from the
working directory.
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

from tsmtp import (
    Connection,
    Outcome,
    Plugin,
    PluginConfig,
    ServerContext,
    Transaction,
    Verdict,
    override,
)


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
#: A file this old in ``tmp/`` is left over from a write that never finished (Maildir convention).
STALE_TMP_AGE = 36 * 3600


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
    written before the call is covered; it raises if that flush failed. The flush belongs to no
    waiter: a waiter that is cancelled (even the one whose call started it) leaves at once, and
    the flush runs on for the others.
    """

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush
        self._started = 0
        self._finished = 0
        self._running = False
        self._changed = trio.Event()
        self._failed: dict[int, Exception] = {}

    async def wait(self) -> None:
        target = self._started + 1
        while self._finished < target:
            if not self._running:
                self._start_flush()
            await self._changed.wait()
        error = self._failed.get(target)
        if error is not None:
            raise error

    def _start_flush(self) -> None:
        self._running = True
        self._started += 1
        generation = self._started
        token = trio.lowlevel.current_trio_token()

        def flush_and_report() -> None:
            error: Exception | None = None
            try:
                self._flush()
            except Exception as exc:  # reported to the waiters, who raise it
                error = exc
            with contextlib.suppress(trio.RunFinishedError):  # nobody is left to tell
                token.run_sync_soon(self._flush_done, generation, error)

        trio.lowlevel.start_thread_soon(flush_and_report, lambda _: None, name="maildir flush")

    def _flush_done(self, generation: int, error: Exception | None) -> None:
        self._running = False
        self._finished = generation
        if error is not None:
            self._failed[generation] = error
        self._failed.pop(generation - 1000, None)
        changed, self._changed = self._changed, trio.Event()
        changed.set()


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
    async def hook_init_master(self, server: ServerContext) -> Outcome:
        # Before the server listens, so scanning tmp/ here holds up no connection.
        removed = self.remove_stale_tmp(time.time())
        self.loginfo(
            f"removed {removed} unfinished file(s) older than 36 hours from {self.root}/tmp"
        )
        return None

    def remove_stale_tmp(self, now: float) -> int:
        """Remove the files in ``tmp/`` not modified for :data:`STALE_TMP_AGE` seconds before
        ``now``; return how many. A finished write is renamed at once, so those are debris."""
        removed = 0
        with os.scandir(self.root / "tmp") as entries:
            for entry in entries:
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    if now - entry.stat(follow_symlinks=False).st_mtime <= STALE_TMP_AGE:
                        continue
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue  # another process cleaned it meanwhile
                except OSError as exc:
                    self.logwarn(f"cannot remove {entry.path}: {exc}")
                    continue
                removed += 1
        return removed

    @override
    async def hook_queue(self, connection: Connection, txn: Transaction) -> Outcome:
        await txn.apply_body_filters()  # done by the core before the queue hooks; cheap then
        size = txn.message_size()
        args = (str(self.root), txn.message_chunks(), size, self._fsync_each)
        if size < _INLINE_WRITE and txn.in_memory and not self._fsync_each:
            path = write_message(*args)  # a small write to the page cache: no thread needed
        else:
            path = await trio.to_thread.run_sync(write_message, *args)
        try:
            if self._commit is not None:
                await self._commit.wait()
        except OSError as exc:
            self.logerror(f"flushing {path} to disk failed: {exc}", connection)
            self._withdraw(path, connection)
            return Verdict.DENYSOFT("Could not store the message safely, try again later")
        except BaseException:
            self._withdraw(path, connection)  # cancelled or failed: the client hears no 250
            raise
        self.loginfo("stored %s", connection, path)
        return Verdict.OK

    def _withdraw(self, path: str, connection: Connection) -> None:
        """Remove a stored message the client will not hear 250 for (it will send it again)."""
        try:
            os.unlink(path)
        except OSError as exc:
            self.logwarn(
                f"cannot withdraw {path} ({exc}): the client's retry may deliver it twice",
                connection,
            )
        else:
            self.loginfo("withdrew %s: the client is not told 250 for it", connection, path)
