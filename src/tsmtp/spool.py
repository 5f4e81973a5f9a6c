"""A message body kept in memory while small and in an anonymous temporary file past a threshold."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

CHUNK = 1 << 16


class Spool:
    """Append-only bytes: memory up to ``threshold`` octets, then an unlinked temporary file.

    Writes to the file go to the page cache and do not wait for the disk; durability is the queue
    plugin's job. The file has no name, so nothing is left behind if the process dies. Reads use
    positional reads, so several readers (one in a worker thread, say) do not disturb each other.
    """

    def __init__(self, threshold: int = 1 << 20, directory: str | None = None) -> None:
        self.threshold = threshold
        self.directory = directory
        self.size = 0
        self._chunks: list[bytes] = []
        self._file: BinaryIO | None = None

    @property
    def in_memory(self) -> bool:
        return self._file is None

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self._file is not None:
            self._file.write(data)
            return
        self._chunks.append(data)
        if self.size > self.threshold:
            self._file = tempfile.TemporaryFile(dir=self.directory)  # noqa: SIM115 (owned here)
            for chunk in self._chunks:
                self._file.write(chunk)
            self._chunks.clear()

    def chunks(
        self, size: int = CHUNK, *, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        """The octets from ``start`` to ``end`` (the end of the content when None), in chunks of
        at most ``size`` octets (from the file) or as they were written (in memory)."""
        stop = self.size if end is None else min(end, self.size)
        if start >= stop:
            return
        if self._file is None:
            yield from _slice(self._chunks, start, stop)
            return
        self._file.flush()
        fd = self._file.fileno()
        offset = start
        while offset < stop:
            chunk = os.pread(fd, min(size, stop - offset), offset)
            if not chunk:
                return
            offset += len(chunk)
            yield chunk

    def head(self, limit: int) -> bytes:
        """Up to ``limit`` octets from the start."""
        return b"".join(self.chunks(start=0, end=limit))

    def close(self) -> None:
        self._chunks.clear()
        if self._file is not None:
            self._file.close()
            self._file = None


def _slice(chunks: list[bytes], start: int, stop: int) -> Iterator[bytes]:
    position = 0
    for chunk in chunks:
        following = position + len(chunk)
        if following > start:
            if position >= start and following <= stop:
                yield chunk
            else:
                yield chunk[max(start - position, 0) : stop - position]
        if following >= stop:
            return
        position = following
