"""Reading the DATA section: end only at CRLF.CRLF, un-stuff dots, count size.

A message ends only at ``CRLF . CRLF``. A bare LF or bare CR, anywhere, neither ends nor splits
a message (the SMTP smuggling class of attacks relies on servers that disagree about this). The
reader either flags such a message for rejection or rewrites each bare ending to CRLF, after the
end has been found on the raw bytes, so rewriting can never create an end marker.
"""

from __future__ import annotations

from typing import Literal

BareEndings = Literal["reject", "normalize"]

_END = b"\r\n.\r\n"
#: A partial line longer than this is passed on rather than held while waiting for its ending.
_HOLD_LIMIT = 65536


class DataReader:
    """Feed raw DATA bytes; get body bytes (un-stuffed) until :attr:`done`.

    After ``done``, :attr:`leftover` holds whatever the client pipelined after the end marker.
    Past ``max_size`` the body is no longer returned but reading goes on to the end marker, so
    the session stays in step with the client. Problems are recorded, not raised:
    :attr:`too_big`, :attr:`bare_endings` and :attr:`long_line`.
    """

    def __init__(
        self,
        max_size: int,
        *,
        max_line: int = 1000,
        bare_endings: BareEndings = "reject",
    ) -> None:
        self.max_size = max_size
        self.max_line = max_line
        self.normalize = bare_endings == "normalize"
        self.size = 0
        self.done = False
        self.leftover = b""
        self.too_big = False
        self.bare_endings = False
        self.long_line = False
        self._pending = b""
        self._at_line_start = True
        self._line_len = 0

    def feed(self, data: bytes) -> bytes:
        """Consume ``data``; return the body bytes it completes (possibly empty)."""
        if self.done:
            raise RuntimeError("DataReader fed after the end of data")
        buf = self._pending + data if self._pending else data
        if self._at_line_start and buf[:3] == b".\r\n":
            return self._finish(b"", buf[3:])
        end = buf.find(_END)
        if end >= 0:
            return self._finish(buf[: end + 2], buf[end + 5 :])
        cut = buf.rfind(b"\r\n")
        if cut >= 0:
            self._pending = buf[cut + 2 :]
            region = self._process(buf[: cut + 2], ends_line=True)
        elif len(buf) > _HOLD_LIMIT:
            # A very long line: pass on all but the last byte, which may be the CR of a CRLF.
            self._pending = buf[-1:]
            region = self._process(buf[:-1], ends_line=False)
        else:
            self._pending = buf
            region = b""
        return region

    def _finish(self, region: bytes, leftover: bytes) -> bytes:
        self.done = True
        self.leftover = leftover
        self._pending = b""
        return self._process(region, ends_line=True) if region else b""

    def _process(self, region: bytes, *, ends_line: bool) -> bytes:
        self._check_line_length(region, ends_line)
        # Un-stuff only at real line starts (after CRLF), before any rewriting of bare endings.
        if self._at_line_start and region[:1] == b".":
            region = region[1:]
        if b"\r\n." in region:
            region = region.replace(b"\r\n.", b"\r\n")
        crlf = region.count(b"\r\n")
        if region.count(b"\n") != crlf or region.count(b"\r") != crlf:
            self.bare_endings = True
            if self.normalize:
                region = region.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                region = region.replace(b"\n", b"\r\n")
        self._at_line_start = ends_line
        self.size += len(region)
        if self.size > self.max_size:
            self.too_big = True
        return b"" if self.too_big else region

    def _check_line_length(self, region: bytes, ends_line: bool) -> None:
        limit = self.max_line - 2
        if self._line_len + len(region) <= limit:
            self._line_len = 0 if ends_line else self._line_len + len(region)
            return
        lines = region.split(b"\r\n")
        first = self._line_len + len(lines[0])
        if first > limit or max(map(len, lines)) > limit:
            self.long_line = True
        self._line_len = 0 if ends_line else (first if len(lines) == 1 else len(lines[-1]))
