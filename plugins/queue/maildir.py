"""Store each message in a Maildir; the 250 is sent only after the file and directory are fsync'd.

The message goes to ``tmp/``, is flushed to disk, renamed into ``new/``, and ``new/`` itself is
flushed so the rename survives a crash. Relative paths are taken from the working directory.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path

import trio

from tsmtp import Connection, Outcome, Plugin, PluginConfig, Verdict, override


class MaildirConfig(PluginConfig, kw_only=True, frozen=True):
    #: The Maildir (``tmp``, ``new`` and ``cur`` are created in it).
    path: str = "var/mail"
    #: Flush each message and the directory to disk before answering 250.
    fsync: bool = True


_counter = itertools.count()
_HOST = socket.gethostname().replace("/", "_").replace(":", "_")


def unique_name(size: int) -> str:
    now = time.time()
    seconds, micro = int(now), int((now % 1) * 1_000_000)
    return f"{seconds}.M{micro}P{os.getpid()}Q{next(_counter)}.{_HOST},S={size}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_message(root: Path, chunks: Iterable[bytes], size: int, fsync: bool) -> Path:
    """Write one message into the Maildir at ``root``; return its path in ``new/``."""
    name = unique_name(size)
    tmp = root / "tmp" / name
    try:
        with open(tmp, "xb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        final = root / "new" / name
        os.rename(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(root / "new")
    return final


class Maildir(Plugin):
    config: MaildirConfig

    @override
    def register(self) -> None:
        self.root = Path(self.config.path).absolute()
        for sub in ("tmp", "new", "cur"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @override
    async def hook_queue(self, connection: Connection) -> Outcome:
        txn = connection.transaction
        if txn is None:
            return Verdict.CONT
        path = await trio.to_thread.run_sync(
            write_message, self.root, txn.message_chunks(), txn.message_size(), self.config.fsync
        )
        self.loginfo(f"stored {path.name}", connection)
        return Verdict.OK
