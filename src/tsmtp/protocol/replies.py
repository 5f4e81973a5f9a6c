"""Formatting SMTP replies (RFC 5321 section 4.2, RFC 2034 enhanced status codes)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

_ENHANCED_PREFIX = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3} ")


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: a three-digit code, optional enhanced status code and text lines."""

    code: int
    lines: tuple[str, ...]
    enhanced: str | None = None
    wire: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "wire", self._format())

    @classmethod
    def of(cls, code: int, text: str | Sequence[str], enhanced: str | None = None) -> Reply:
        lines = (text,) if isinstance(text, str) else tuple(text)
        return cls(code, lines or ("",), enhanced)

    @property
    def is_positive(self) -> bool:
        return self.code < 400

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def to_bytes(self) -> bytes:
        """The reply on the wire: every line but the last uses ``code-``; CR and LF never leak."""
        return self.wire

    def _format(self) -> bytes:
        code = str(self.code)
        lines = self.lines
        prefix = f"{self.enhanced} " if self.enhanced else ""
        first = lines[0]
        if len(lines) == 1 and "\r" not in first and "\n" not in first:
            if prefix and first[1:2] == "." and _ENHANCED_PREFIX.match(first):
                prefix = ""
            return f"{code} {prefix}{first}".rstrip(" ").encode("utf-8", "replace") + (
                b" \r\n" if self.code == 334 and not first else b"\r\n"
            )
        own = _ENHANCED_PREFIX.match(first)
        if own is not None:  # a plugin's own enhanced code applies to all its lines
            prefix = own.group(0)
        out = []
        last = len(lines) - 1
        for i, line in enumerate(lines):
            clean = line.replace("\r", " ").replace("\n", " ")
            # A plugin may already have put an enhanced code in its text; don't add a second one.
            line_prefix = "" if _ENHANCED_PREFIX.match(clean) else prefix
            sep = " " if i == last else "-"
            out.append(f"{code}{sep}{line_prefix}{clean}".rstrip(" ") + "\r\n")
        return "".join(out).encode("utf-8", "replace")
