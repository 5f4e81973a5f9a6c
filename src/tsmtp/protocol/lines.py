"""Splitting the command stream into lines, with the RFC 5321 length limit."""

from __future__ import annotations

from typing import Final

from typing_extensions import override


class _TooLong:
    @override
    def __repr__(self) -> str:
        return "LINE_TOO_LONG"


#: Returned by :meth:`LineBuffer.next_line` for a line over the limit (already discarded).
LINE_TOO_LONG: Final = _TooLong()


class LineBuffer:
    """Bytes in, command lines out.

    Lines end with CRLF; a bare LF is also taken as the end of a command line (as most servers
    do), never inside DATA, which has its own reader. A line longer than ``max_line`` octets
    (ending included) is dropped up to its end and reported once as :data:`LINE_TOO_LONG`, so the
    buffer never grows past the limit however long the line is.
    """

    __slots__ = ("_buf", "_overflow", "_scanned", "max_line")

    def __init__(self, max_line: int = 512) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._scanned = 0
        self._overflow = False

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_line(self) -> bytes | _TooLong | None:
        """The next complete line without its ending, LINE_TOO_LONG, or None if incomplete."""
        buf = self._buf
        end = buf.find(b"\n", self._scanned)
        if end < 0:
            if len(buf) > self.max_line:
                self._overflow = True
                buf.clear()
                self._scanned = 0
            else:
                self._scanned = len(buf)
            return None
        line = bytes(buf[: end - 1 if end and buf[end - 1] == 13 else end])
        del buf[: end + 1]
        self._scanned = 0
        if self._overflow or end + 1 > self.max_line:
            self._overflow = False
            return LINE_TOO_LONG
        return line

    def has_line(self) -> bool:
        """True if a complete line is already buffered (used to decide when to flush replies)."""
        return self._buf.find(b"\n", self._scanned) >= 0

    def take(self) -> bytes:
        """Hand every buffered byte to another reader (DATA, TLS) and empty the buffer."""
        data = bytes(self._buf)
        self._buf.clear()
        self._scanned = 0
        self._overflow = False
        return data

    def __len__(self) -> int:
        return len(self._buf)
