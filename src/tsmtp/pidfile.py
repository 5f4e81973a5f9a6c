"""The pid file of a running server: one server per file, found by ``tsmtp reload``.

The file holds the server's process id and stays locked (``flock``) while the server runs, so
a live server is told from a stale file by the lock, not by a process id that may have been
reused: a file nobody holds is taken over.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class PidFileError(Exception):
    """The pid file is held by another server, cannot be written, or names no server."""


def _read_pid(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode("ascii", "replace").strip()
    return int(text) if text.isascii() and text.isdigit() else None


class PidFile:
    """``acquire()`` at start, ``release()`` at a clean exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> int | None:
        """Write this process's id and lock the file; returns the id of a stale file taken
        over, if any. Raises PidFileError if another live server holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = self._open_locked()
            while fd is None:
                fd = self._open_locked()
        except OSError as exc:
            raise PidFileError(f"{self.path}: cannot write the pid file: {exc.strerror}") from None
        stale = _read_pid(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return stale

    def _open_locked(self) -> int | None:
        """The file, open and locked; None if it was replaced meanwhile (try again)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            holder = f"pid {pid}" if pid is not None else "a process"
            raise PidFileError(
                f"{self.path}: another tsmtp server ({holder}) is running with this pid file; "
                "stop it first, or give this one another pid_file"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # The holder may have removed the file between our open and our lock: then ours is a
        # file nobody will find.
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return None
        return fd

    def release(self) -> None:
        """Remove the file (if it is still this server's) and let go of it."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                self.path.unlink()
        os.close(self._fd)
        self._fd = None


def running_server_pid(path: Path) -> int:
    """The process id of the live server holding the pid file ``path``.

    Raises PidFileError if there is no such file or no server holds it (a stale file).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PidFileError(
            f"{path}: no pid file, so no server is running with it (relative paths are taken "
            "from the directory tsmtp runs in: run this command from the server's)"
        ) from None
    except OSError as exc:
        raise PidFileError(f"{path}: cannot read the pid file: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            if pid is None:
                raise PidFileError(f"{path}: holds no process id") from None
            return pid
        raise PidFileError(f"{path}: stale pid file: no server is running with it")
    finally:
        os.close(fd)
