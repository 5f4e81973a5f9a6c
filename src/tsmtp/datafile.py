"""A file a plugin reads from the config directory, parsed again whenever it changes."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import trio

if TYPE_CHECKING:
    from .plugin import Plugin

T = TypeVar("T")

#: Seconds after its last change during which a file may change again unseen: a rewrite of the
#: same size within the resolution of the file system's timestamps leaves the stamp as it was.
_SETTLE = 2.0

_Stamp = tuple[int, int, int, int]


def _stamp(st: os.stat_result) -> _Stamp:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class DataFile(Generic[T]):
    """A data file of a plugin (``host_list``, ``auth_users``, ...), read through ``parse``.

    ``DataFile(self, "host_list", parse, missing=frozenset())`` in ``register()`` reads the file
    (a name relative to the config directory) with ``parse(path)`` at once; a parse error then
    raises, so the server does not start with a broken file. :attr:`value` is the parsed content.

    The file is read again when it changes: at most once every ``interval`` seconds (Trio time;
    on every access outside a Trio run), :attr:`value` compares the file's device, inode, size and
    modification time, one ``stat``, with those of the version it holds, and parses the file
    again if any differs, so replacing the file by a rename and editing it in place both count.
    Parsing runs in the caller's thread: keep ``parse`` quick for the file sizes expected.

    - A change that fails to parse leaves the value read before, and is logged once.
    - A missing file gives ``missing``, with a warning each time the file goes missing.
    - ``describe(value)`` words the value for the log (``lambda d: f"{len(d)} domain(s)"`` logs
      "3 domain(s) from .../host_list" at each change).
    - ``private``: warn when other users may read or write the file (password hashes, keys).
    """

    def __init__(
        self,
        plugin: Plugin,
        file: str,
        parse: Callable[[Path], T],
        *,
        missing: T,
        describe: Callable[[T], str] | None = None,
        private: bool = False,
        interval: float = 1.0,
    ) -> None:
        #: The file, as given joined to the plugin's config directory.
        self.path = plugin.config_file(file)
        #: Seconds between two looks at the file.
        self.interval = interval
        self._plugin = plugin
        self._parse = parse
        self._missing = missing
        self._describe = describe
        self._private = private
        self._value = missing
        self._exists = False
        self._stamp: _Stamp | None = None  # of the version held; None: parse it at the next look
        self._refused: _Stamp | None = None  # a version that failed to parse, already logged
        self._error: str | None = None  # the last error logged, so it is logged once
        self._checked: float | None = None
        self._check(initial=True)

    @property
    def value(self) -> T:
        """The parsed content of the file, read again first if it has changed."""
        try:
            now = trio.current_time()
        except RuntimeError:  # outside Trio nothing is hot: look every time
            self._check()
            return self._value
        last = self._checked
        if last is None or not 0 <= now - last < self.interval:
            self._checked = now
            self._check()
        return self._value

    def check(self) -> None:
        """Look at the file now (as a reload does), and read it again if it has changed."""
        self._check()

    def _summary(self, value: T, default: str) -> str:
        return self._describe(value) if self._describe is not None else default

    def _kept(self) -> str:
        return self._summary(self._value, "the content")

    def _log_error_once(self, message: str) -> None:
        if message != self._error:
            self._error = message
            self._plugin.logerror(message)

    def _check(self, *, initial: bool = False) -> None:
        path = self.path
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            if self._exists or initial:
                self._plugin.logwarn(
                    f"{path} does not exist: "
                    f"{self._summary(self._missing, 'the default')} until it does"
                )
            self._value, self._exists, self._stamp, self._error = self._missing, False, None, None
            return
        except OSError as exc:
            if initial:
                raise
            self._log_error_once(f"{exc}; keeping {self._kept()} read before")
            return
        stamp = _stamp(st)
        if stamp == self._stamp or stamp == self._refused:
            return
        try:
            value = self._parse(path)
        except Exception as exc:
            if initial:
                raise
            self._refused = stamp
            text = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            self._log_error_once(f"{text}; keeping {self._kept()} read before")
            return
        changed = initial or not self._exists or value != self._value
        settled = time.time() - st.st_mtime_ns / 1e9 > _SETTLE
        self._value, self._exists, self._refused, self._error = value, True, None, None
        self._stamp = stamp if settled else None
        if not changed:
            return
        self._plugin.loginfo(
            f"{self._describe(value)} from {path}" if self._describe else f"read {path}"
        )
        if self._private and stat.S_IMODE(st.st_mode) & 0o077:
            self._plugin.logwarn(f"{path} can be read by other users; chmod 600 it")
