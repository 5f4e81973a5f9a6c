"""A message body kept in memory while small and in an anonymous temporary file past a threshold."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import BinaryIO

CHUNK = 1 << 16


class Spool:
    """Append-only bytes: memory up to ``threshold`` octets, then an unlinked temporary file.

    Writes to the file go to the page cache and do not wait for the disk; durability is the queue
    plugin's job. The file has no name, so nothing is left behind if the process dies.
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

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The content from the start, in chunks of at most ``size`` octets (file) or as written."""
        if self._file is None:
            yield from self._chunks
            return
        self._file.flush()
        self._file.seek(0)
        while chunk := self._file.read(size):
            yield chunk
        self._file.seek(0, 2)

    def head(self, limit: int) -> bytes:
        """Up to ``limit`` octets from the start."""
        out = bytearray()
        for chunk in self.chunks():
            out += chunk[: limit - len(out)]
            if len(out) >= limit:
                break
        return bytes(out)

    def close(self) -> None:
        self._chunks.clear()
        if self._file is not None:
            self._file.close()
            self._file = None
