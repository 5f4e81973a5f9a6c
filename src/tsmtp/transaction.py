"""A mail transaction: envelope, notes, added headers and the spooled body."""

from __future__ import annotations

import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.parser import BytesHeaderParser

from typing_extensions import override

from .log import LogMethods
from .notes import Notes
from .protocol import Address, MailParams, RcptParams
from .spool import Spool

_HEADER_SCAN = 1 << 16


class _ForgivingHeaderRegistry(HeaderRegistry):
    """The standard header classes, except that a field its class cannot parse reads as text.

    The structured parsers of :mod:`email` raise (IndexError, TypeError, AttributeError...) on
    some malformed fields, such as ``From: <``; mail from the network is not to be trusted, and
    reading a header must never be what makes a message fail.
    """

    def __init__(self) -> None:
        super().__init__()
        self._as_text = HeaderRegistry(use_default_map=False)

    @override
    def __call__(self, name: str, value: str) -> BaseHeader:
        try:
            return super().__call__(name, value)
        except Exception:  # whatever the failure, the field is still readable as text
            return self._as_text(name, value)


_HEADER_PARSER = BytesHeaderParser(
    policy=email.policy.default.clone(header_factory=_ForgivingHeaderRegistry())
)


#: RFC 5322 3.6.8: printable ASCII except the colon.
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")


@dataclass(frozen=True, slots=True)
class Recipient:
    """An accepted recipient and the parameters given with it.

    ``original`` is the address the client gave when a rcpt hook rewrote it (an alias, say): a
    delivery status notification reports that one (RFC 3461 ORCPT) unless the client sent ORCPT.
    """

    address: Address
    params: RcptParams
    original: Address | None = None

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
        """Add a header field at the top of the message (newest first, like ``Received:``).

        ``value`` may be folded (a line break followed by a space or a tab); a line break that
        would start a new field, a bare CR and NUL raise ValueError.
        """
        if not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"bad header name {name!r}")
        lines = value.replace("\r\n", "\n").split("\n")
        if any(not line.startswith((" ", "\t")) for line in lines[1:]) or any(
            c in value.replace("\r\n", "") for c in "\r\0"
        ):
            raise ValueError(f"header {name}: value {value!r} is not a (folded) field body")
        folded = "\r\n".join(lines)
        self._added_headers.insert(0, f"{name}: {folded}\r\n".encode())

    @property
    def added_headers(self) -> bytes:
        return b"".join(self._added_headers)

    def header(self) -> EmailMessage[str, str]:
        """The message's header section, parsed (added headers included; the first 64 KiB).

        Values are ``str``: unfolded, RFC 2047 encoded words decoded, raw UTF-8 (SMTPUTF8,
        8BITMIME) read as UTF-8, bytes that are not UTF-8 read as U+FFFD. They are instances of
        the :mod:`email.headerregistry` classes, so ``isinstance(value, AddressHeader)`` gives
        ``value.addresses``; a field that cannot be parsed as its kind reads as plain text.
        """
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
