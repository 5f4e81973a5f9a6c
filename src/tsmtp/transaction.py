"""A mail transaction: envelope, notes, added headers and the spooled body."""

from __future__ import annotations

import email.policy
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser

from typing_extensions import override

from .log import LogMethods
from .notes import Notes
from .protocol import Address, MailParams, RcptParams
from .spool import Spool

_HEADER_PARSER = BytesHeaderParser(policy=email.policy.compat32)
_HEADER_SCAN = 1 << 16


@dataclass(frozen=True, slots=True)
class Recipient:
    """An accepted recipient and the parameters given with it."""

    address: Address
    params: RcptParams

    @override
    def __str__(self) -> str:
        return self.address.address


class Transaction(LogMethods):
    """One MAIL ... DATA exchange. Lives on ``connection.transaction`` from MAIL to its end."""

    def __init__(
        self,
        uuid: str,
        sender: Address,
        params: MailParams,
        *,
        spool_threshold: int = 1 << 20,
        spool_dir: str | None = None,
    ) -> None:
        self.uuid = uuid
        self.sender = sender
        self.mail_params = params
        self.recipients: list[Recipient] = []
        self.notes = Notes()
        self.body = Spool(spool_threshold, spool_dir)
        self.skip_plugins: set[str] = set()
        self._added_headers: list[bytes] = []

    @property
    def log_id(self) -> str:
        return self.uuid

    @property
    def data_size(self) -> int:
        """Size of the received body in octets (without headers added here)."""
        return self.body.size

    def add_header(self, name: str, value: str) -> None:
        """Add a header field at the top of the message (newest first, like ``Received:``)."""
        if not name or any(c in name for c in ": \r\n"):
            raise ValueError(f"bad header name {name!r}")
        folded = value.replace("\r\n", "\n").replace("\n", "\r\n")
        self._added_headers.insert(0, f"{name}: {folded}\r\n".encode())

    @property
    def added_headers(self) -> bytes:
        return b"".join(self._added_headers)

    def header(self) -> Message:
        """The message's header section, parsed (added headers included)."""
        head = self.added_headers + self.body.head(_HEADER_SCAN)
        end = head.find(b"\r\n\r\n")
        return _HEADER_PARSER.parsebytes(head if end < 0 else head[: end + 2])

    def message_chunks(self) -> Iterator[bytes]:
        """The message as stored: added headers, then the body exactly as received."""
        added = self.added_headers
        if added:
            yield added
        yield from self.body.chunks()

    def message_size(self) -> int:
        return sum(map(len, self._added_headers)) + self.body.size

    def discard(self) -> None:
        self.body.close()
