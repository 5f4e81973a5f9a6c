"""A mail transaction: envelope, notes, results, and the message with its edits."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesFeedParser
from typing import cast

import trio
from typing_extensions import override

from .headers import POLICY, Headers
from .log import LogMethods
from .message import (
    Banner,
    BodyFilter,
    MessagePart,
    MessageTooLarge,
    banner_filter,
    count_banner_parts,
    html_banner,
    walk,
)
from .notes import Notes
from .protocol import Address, MailParams, RcptParams
from .results import Results
from .spool import Spool

#: The default of ``[data] max_parse_size``.
DEFAULT_MAX_PARSE_SIZE = 10 * 1024 * 1024


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


@dataclass(frozen=True, slots=True)
class _Stored:
    """How the stored message is made: ``head`` then ``source[start:]``."""

    head: bytes
    source: Spool
    start: int


class Transaction(LogMethods):
    """One MAIL ... DATA exchange. Lives on ``connection.transaction`` from MAIL to its end.

    The message is kept as received (:attr:`body`); plugins change what will be stored through
    :attr:`headers` and body filters, and read it through :meth:`message_chunks`,
    :meth:`message`, :meth:`parts` and :meth:`body_chunks`.
    """

    def __init__(
        self,
        uuid: str,
        sender: Address,
        params: MailParams,
        *,
        spool_threshold: int = 1 << 20,
        spool_dir: str | None = None,
        max_parse_size: int = DEFAULT_MAX_PARSE_SIZE,
    ) -> None:
        self.uuid = uuid
        self.sender = sender
        self.mail_params = params
        self.recipients: list[Recipient] = []
        self.notes = Notes()
        #: What each plugin found about this message (see :class:`~tsmtp.Results`).
        self.results = Results()
        #: The message exactly as received: header and body, as the client sent them.
        self.body = Spool(spool_threshold, spool_dir)
        #: The header fields as they will be stored; edits here show in the stored message.
        self.headers = Headers(self.body, utf8=params.smtputf8)
        #: :meth:`message` refuses to parse a message larger than this (octets).
        self.max_parse_size = max_parse_size
        self.skip_plugins: set[str] = set()
        self._filters: list[BodyFilter] = []
        self._rendered: Spool | None = None
        self._rendered_for: tuple[int, int] | None = None

    @property
    def log_id(self) -> str:
        return self.uuid

    @property
    def data_size(self) -> int:
        """Size of the message as received, in octets (no edits counted)."""
        return self.body.size

    # --- headers ----------------------------------------------------------------------------

    def add_header(self, name: str, value: str) -> None:
        """The same as ``headers.prepend(name, value)``: a field at the top of the message."""
        self.headers.prepend(name, value)

    def header(self) -> EmailMessage:
        """The header fields as they will be stored, as a new EmailMessage with no body.

        Values are decoded as by :attr:`headers`; prefer ``txn.headers.get(...)``, which reads
        without building a message.
        """
        return self.headers.as_message()

    # --- the stored message -----------------------------------------------------------------

    def message_chunks(self) -> Iterator[bytes]:
        """The message as it will be stored: the header fields with their edits, then the body
        with the body filters applied. Octet for octet what was received when nothing changed.
        """
        stored = self._stored()
        if stored is None:
            return self.body.chunks()
        return self._chain(stored)

    @staticmethod
    def _chain(stored: _Stored) -> Iterator[bytes]:
        if stored.head:
            yield stored.head
        yield from stored.source.chunks(start=stored.start)

    def message_size(self) -> int:
        """The size in octets of the message as it will be stored (see :meth:`message_chunks`)."""
        stored = self._stored()
        if stored is None:
            return self.body.size
        return len(stored.head) + stored.source.size - stored.start

    def body_chunks(self) -> Iterator[bytes]:
        """The body as it will be stored (after the header section and its blank line, body
        filters applied), for plugins that hash or scan it.

        These read the spool file of a large message: iterate in a worker thread
        (``trio.to_thread.run_sync``) when :attr:`in_memory` is false and the work is heavy.
        """
        source, start = self._body_source()
        return source.chunks(start=start)

    def received_chunks(self) -> Iterator[bytes]:
        """The message exactly as the client sent it, before any edit or filter."""
        return self.body.chunks()

    @property
    def in_memory(self) -> bool:
        """Whether the message (and its filtered body, if any) is held in memory."""
        return self.body.in_memory and (self._rendered is None or self._rendered.in_memory)

    # --- body filters -----------------------------------------------------------------------

    def add_body_filter(self, body_filter: BodyFilter) -> None:
        """Install a filter over the body: a callable that takes the body as an iterator of
        chunks and yields the body to store (a generator, so a large body is never held whole).

        Filters run in the order they were added, each over the output of the one before, once,
        when the stored form is first needed (:meth:`apply_body_filters`, or at the latest the
        queue plugin's :meth:`message_size` or :meth:`message_chunks`). They see the body only,
        after the header section, as raw (transfer-encoded) octets: a filter that changes text
        must respect the MIME structure, as :meth:`add_banner` does. An exception a filter
        raises surfaces in the queue plugin and fails the message temporarily.
        """
        self._filters.append(body_filter)

    def add_banner(self, text: str, *, html: str | None = None) -> int:
        """Append a banner to each text part of the message; return how many parts get it.

        ``text`` goes at the end of each ``text/plain`` part, ``html`` (by default ``text``
        escaped, in a paragraph) at the end of each ``text/html`` part, in the part's own charset
        and transfer encoding (7bit, 8bit, binary or quoted-printable). So a plain message, a
        multipart/mixed one and the text and HTML alternatives of a multipart/alternative one
        all get it. Left alone: attachments, base64-encoded texts, parts whose charset cannot
        write the banner, and anything inside multipart/signed, multipart/encrypted or an
        attached message, since changing those would break a signature or another message.
        Returns 0, and installs nothing, when no part can take it. Reads the message once.
        """
        banner = Banner(text, html if html is not None else html_banner(text))
        top = self.headers.as_message()
        count = count_banner_parts(top, self._filtered_body(), banner)
        if count:
            self.add_body_filter(banner_filter(top, banner))
        return count

    async def apply_body_filters(self) -> None:
        """Run the body filters now, in a worker thread when the message is on disk, so that the
        queue plugin's :meth:`message_size` finds the work done instead of doing it in the event
        loop."""
        if not self._filters or self._rendered_for == self._render_key():
            return
        if self.body.in_memory:
            self._render()
        else:
            await trio.to_thread.run_sync(self._render)

    def _render_key(self) -> tuple[int, int]:
        return len(self._filters), self.body.size

    def _filtered_body(self) -> Iterable[bytes]:
        stream: Iterable[bytes] = self.body.chunks(start=self.headers.section().body_start)
        for body_filter in self._filters:
            stream = body_filter(iter(stream))
        return stream

    def _render(self) -> Spool:
        key = self._render_key()
        if self._rendered is not None and self._rendered_for == key:
            return self._rendered
        rendered = Spool(self.body.threshold, self.body.directory)
        try:
            for chunk in self._filtered_body():
                if not isinstance(chunk, bytes):
                    raise TypeError(f"a body filter yielded {type(chunk).__name__}, not bytes")
                rendered.write(chunk)
        except BaseException:
            rendered.close()
            raise
        if self._rendered is not None:
            self._rendered.close()
        self._rendered, self._rendered_for = rendered, key
        return rendered

    def _body_source(self) -> tuple[Spool, int]:
        if self._filters:
            return self._render(), 0
        return self.body, self.headers.section().body_start

    def _stored(self) -> _Stored | None:
        """How to make the stored message, or None when it is the received one unchanged."""
        headers = self.headers
        if not self._filters:
            if not headers.changed:
                return None
            top = headers.prepended()
            if top is not None:  # no need to look into the received header at all
                return _Stored(top, self.body, 0)
        section = headers.section()
        source, start = self._body_source()
        body_size = source.size - start
        separator = b"".join(self.body.chunks(start=section.end, end=section.body_start))
        received_body = section.end < self.body.size
        if not received_body and body_size:
            # Only a filter made this body: without a blank line it would join the last field.
            separator = b"\r\n"
        head = headers.as_bytes(followed=bool(separator) or body_size > 0) + separator
        return _Stored(head, source, start)

    # --- parsed views -----------------------------------------------------------------------

    def message(self, max_size: int | None = None) -> EmailMessage:
        """The message as it will be stored, parsed whole with ``email.policy.default``.

        Raises :class:`~tsmtp.MessageTooLarge` when it is over ``max_size`` octets (by default
        :attr:`max_parse_size`, ``[data] max_parse_size`` in smtp.toml), since a parsed message
        takes several times its size in memory; :meth:`parts` walks a message of any size.
        Each call parses anew.
        """
        limit = self.max_parse_size if max_size is None else max_size
        size = self.message_size()
        if size > limit:
            raise MessageTooLarge(size, limit)
        parser = BytesFeedParser(policy=POLICY)
        for chunk in self.message_chunks():
            parser.feed(chunk)
        return cast(EmailMessage, parser.close())

    def parts(self) -> list[MessagePart]:
        """Every MIME entity of the message as it will be stored, in order: the message itself
        first, then each part (containers included, attached messages descended into), with
        its content type, file name and a way to read its decoded body.

        The walk streams the body and keeps only each part's header and position, so it works
        on a message of any size; raises :class:`~tsmtp.MessageTooComplex` past 10 000 parts or
        50 levels of nesting. Reading a part after a body filter was added raises RuntimeError.
        """
        source, start = self._body_source()
        generation = self._render_key()

        def read(begin: int, end: int) -> Iterator[bytes]:
            if self._filters and self._render_key() != generation:
                raise RuntimeError("the body changed since parts() was called; walk it again")
            return source.chunks(start=start + begin, end=start + end)

        return walk(self.headers.as_message(), source.chunks(start=start), read)

    # --- the end ----------------------------------------------------------------------------

    def results_line(self, connection_results: Results | None = None) -> str | None:
        """The one-line summary of this transaction's results, then its connection's, or None
        when there are none: ``results: spf: pass=mfrom | karma: score=3; connection: ...``."""
        parts = []
        if len(self.results):
            parts.append(self.results.summary())
        if connection_results is not None and len(connection_results):
            parts.append(f"connection: {connection_results.summary()}")
        return f"results: {'; '.join(parts)}" if parts else None

    def log_results(self, connection_results: Results | None = None) -> None:
        """Log :meth:`results_line` at INFO, if there are results."""
        line = self.results_line(connection_results)
        if line is not None:
            self.loginfo(line)

    def discard(self) -> None:
        self.body.close()
        if self._rendered is not None:
            self._rendered.close()
            self._rendered = None
