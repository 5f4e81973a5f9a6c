"""Reading and rewriting a message body as a stream: lines, body filters, MIME parts, banners.

Nothing here holds a whole message in memory: the MIME walk keeps the header fields of each part
and the byte range of its body, and the filters see the body chunk by chunk (or line by line).
"""

from __future__ import annotations

import binascii
import html
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage

from .headers import is_header_line, parse_fields

#: A body filter: given the body as an iterator of chunks, yields the body to store instead.
#: It runs once, as the message is queued; it must not keep the whole body in memory.
BodyFilter = Callable[[Iterator[bytes]], Iterable[bytes]]

#: Lines longer than this come in pieces (see :func:`lines`).
MAX_PIECE = 1 << 16
#: A MIME walk refuses messages with more parts, or deeper nesting, than this.
MAX_PARTS = 10_000
MAX_DEPTH = 50
#: Octets of header kept for one MIME part; the rest of a longer part header is skipped.
MAX_PART_HEADER = 1 << 16

_LINE_END = re.compile(rb"\r\n|\r|\n")
#: A line ending followed by a line that starts with ``--``: where a delimiter may be.
_CANDIDATE = re.compile(rb"(?:\r\n|\r|\n)(?=--)")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_IDENTITY = frozenset({"7bit", "8bit", "binary"})


class MessageTooLarge(Exception):
    """The message is larger than the limit for parsing it whole (``[data] max_parse_size``)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} octets is over the parsing limit of {limit}")
        self.size = size
        self.limit = limit


class MessageTooComplex(Exception):
    """The MIME structure has more parts, or deeper nesting, than a walk follows."""


def lines(chunks: Iterable[bytes], *, max_line: int = MAX_PIECE) -> Iterator[bytes]:
    """Re-cut ``chunks`` into lines, each with its line ending (CRLF, LF or a bare CR, as the
    :mod:`email` parser counts them); the last may have none. A line longer than ``max_line``
    octets comes in pieces of at most that size, so memory stays bounded on binary bodies."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        position = 0
        while (ending := _LINE_END.search(buffer, position)) is not None:
            if ending.group() == b"\r" and ending.end() == len(buffer):
                break  # a CR at the end of the chunk may start a CRLF
            yield bytes(buffer[position : ending.end()])
            position = ending.end()
        del buffer[:position]
        while len(buffer) > max_line:
            cut = max_line - 1 if buffer[max_line - 1] == 0x0D else max_line
            yield bytes(buffer[:cut])
            del buffer[:cut]
    if buffer:
        yield bytes(buffer)


def line_filter(rewrite: Callable[[bytes], bytes]) -> BodyFilter:
    """A body filter that passes each line (with its ending, see :func:`lines`) through
    ``rewrite`` and stores what it returns."""

    def run(chunks: Iterator[bytes]) -> Iterator[bytes]:
        for line in lines(chunks):
            yield rewrite(line)

    return run


def _ending(line: bytes) -> int:
    if line.endswith(b"\r\n"):
        return 2
    return 1 if line.endswith((b"\n", b"\r")) else 0


def _delimiter(line: bytes, boundary: bytes) -> bool | None:
    """Whether ``line`` is a closing delimiter of ``boundary`` (``--`` included), None if it is
    no delimiter of it at all."""
    if not line.startswith(boundary):
        return None
    rest = line[len(boundary) :].rstrip(b"\r\n")
    close = rest.startswith(b"--")
    if rest[2 if close else 0 :].strip(b" \t"):
        return None
    return close


@dataclass(eq=False, slots=True)
class _Node:
    """One MIME entity met by the walk; offsets are relative to the start of the body."""

    depth: int
    default_type: str
    header: bytearray = field(default_factory=bytearray)
    fields: EmailMessage | None = None
    content_type: str = "text/plain"
    body_start: int = -1
    end: int = -1
    boundary: bytes | None = None
    closed: bool = False
    container: bool = False
    #: Ancestors' content types, outermost first.
    within: tuple[str, ...] = ()
    banner: bytes | None = None


@dataclass(frozen=True, slots=True)
class Banner:
    """Text to add at the end of the text parts of a message.

    See :meth:`tsmtp.Transaction.add_banner`.
    """

    text: str
    html: str

    def encoded_for(self, node: _Node) -> bytes | None:
        """The banner for the part ``node``, encoded as that part is, or None if it gets none."""
        fields = node.fields
        if node.container or fields is None or node.content_type not in ("text/plain", "text/html"):
            return None
        if fields.get_content_disposition() == "attachment":
            return None
        if any(
            t in ("multipart/signed", "multipart/encrypted") or t.startswith("message/")
            for t in node.within
        ):
            return None
        encoding = _transfer_encoding(fields)
        if encoding not in _IDENTITY and encoding != "quoted-printable":
            return None
        text = self.text if node.content_type == "text/plain" else self.html
        text = text.replace("\r\n", "\n").strip("\n")
        try:
            data = text.encode(fields.get_content_charset() or "us-ascii")
        except (LookupError, UnicodeError):
            return None
        if encoding == "quoted-printable":
            data = binascii.b2a_qp(data, istext=True)
        elif encoding == "7bit" and not data.isascii():
            return None
        return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def html_banner(text: str) -> str:
    """The HTML form of a plain-text banner: escaped, one ``<br>`` per line break."""
    return "<p>" + html.escape(text.strip("\n")).replace("\n", "<br>\r\n") + "</p>"


def _transfer_encoding(fields: EmailMessage) -> str:
    return str(fields.get("content-transfer-encoding", "7bit")).strip().lower() or "7bit"


class _Walker:
    """Follows the MIME structure of a body fed to it line by line (pieces from :func:`lines`).

    ``feed`` returns the leaf part that ends just before the piece it is given, if any: that is
    where the banner filter inserts.
    """

    def __init__(self, top: EmailMessage, banner: Banner | None = None) -> None:
        self.banner = banner
        self.nodes: list[_Node] = []
        self.open: list[_Node] = []
        self.offset = 0
        self._line_start = True
        self._previous_ending = 0
        root = self._new(0, "text/plain", ())
        root.fields = top
        root.body_start = 0
        self._begin_body(root)

    def _new(self, depth: int, default_type: str, within: tuple[str, ...]) -> _Node:
        if len(self.nodes) >= MAX_PARTS:
            raise MessageTooComplex(f"more than {MAX_PARTS} MIME parts")
        if depth > MAX_DEPTH:
            raise MessageTooComplex(f"MIME parts nested deeper than {MAX_DEPTH}")
        node = _Node(depth, default_type, within=within)
        self.nodes.append(node)
        self.open.append(node)
        return node

    def _begin_body(self, node: _Node, *, descend: bool = True) -> None:
        if node.fields is None:
            node.fields = parse_fields(bytes(node.header))
        node.header = bytearray()
        fields = node.fields
        fields.set_default_type(node.default_type)
        node.content_type = fields.get_content_type()
        within = (*node.within, node.content_type)
        boundary = fields.get_boundary() if node.content_type.startswith("multipart/") else None
        if boundary:
            node.boundary = b"--" + boundary.encode("utf-8", "surrogateescape")
            node.container = True
        elif node.content_type == "message/rfc822" and _transfer_encoding(fields) in _IDENTITY:
            node.container = True
            if descend:
                self._new(node.depth + 1, "text/plain", within)
        if self.banner is not None:
            node.banner = self.banner.encoded_for(node)

    @property
    def wants_lines(self) -> bool:
        """Whether every line matters now (a part's header is being read), not only delimiters."""
        return self.open[-1].body_start < 0

    @property
    def at_line_start(self) -> bool:
        return self._line_start

    def skip(self, content: bytes) -> None:
        """Pass over body content known to hold no delimiter line."""
        self.offset += len(content)
        self._previous_ending = _ending(content)
        self._line_start = self._previous_ending > 0

    def feed(self, piece: bytes) -> _Node | None:
        ended: _Node | None = None
        if self._line_start:
            ended = self._line(piece)
        elif (node := self.open[-1]).body_start < 0 and len(node.header) < MAX_PART_HEADER:
            node.header += piece
        self.offset += len(piece)
        self._previous_ending = _ending(piece)
        self._line_start = self._previous_ending > 0
        return ended

    def _line(self, line: bytes) -> _Node | None:
        if line.startswith(b"--"):
            for k in range(len(self.open) - 1, -1, -1):
                node = self.open[k]
                if node.boundary is None or node.closed:
                    continue
                close = _delimiter(line, node.boundary)
                if close is not None:
                    return self._at_delimiter(k, close, len(line))
        node = self.open[-1]
        if node.body_start >= 0:
            return None
        if _ending(line) == len(line):  # the blank line that ends a part's header
            node.body_start = self.offset + len(line)
            self._begin_body(node)
        elif is_header_line(line):
            if len(node.header) < MAX_PART_HEADER:
                node.header += line
        else:  # no blank line: the body starts here
            node.body_start = self.offset
            self._begin_body(node)
        return None

    def _at_delimiter(self, k: int, close: bool, length: int) -> _Node | None:
        end = self.offset - self._previous_ending
        ended = self._close(self.open[k + 1 :], end)
        del self.open[k + 1 :]
        parent = self.open[k]
        if close:
            parent.closed = True
        else:
            default = (
                "message/rfc822" if parent.content_type == "multipart/digest" else "text/plain"
            )
            self._new(parent.depth + 1, default, (*parent.within, parent.content_type))
        return ended

    def _close(self, nodes: list[_Node], end: int) -> _Node | None:
        ended = None
        for node in reversed(nodes):
            if node.body_start < 0:  # the header never ended: an empty body, and no banner
                node.body_start = self.offset
                self._begin_body(node, descend=False)
                node.banner = None
            node.end = max(end, node.body_start)
            if not node.container:
                ended = node
        return ended

    def finish(self) -> _Node | None:
        ended = self._close(self.open, self.offset)
        self.open.clear()
        return ended


def _drive(walker: _Walker, chunks: Iterable[bytes]) -> Iterator[tuple[bytes, _Node | None]]:
    """Feed a body to ``walker``: each segment with the leaf part that ends just before it.

    Only the lines that can matter go through :meth:`_Walker.feed` one by one (part headers,
    lines starting with ``--``); the content between them is passed over in bulk.
    """
    buffer = bytearray()
    for chunk in itertools.chain(chunks, [None]):
        final = chunk is None
        if chunk is not None:
            buffer += chunk
        position, size = 0, len(buffer)
        while position < size:
            if walker.at_line_start and size - position < 2 and not final:
                break  # the start of a delimiter, perhaps
            if walker.wants_lines or (walker.at_line_start and buffer.startswith(b"--", position)):
                ending = _LINE_END.search(buffer, position)
                if ending is not None and not (
                    ending.group() == b"\r" and ending.end() == size and not final
                ):
                    end = ending.end()
                elif size - position > MAX_PIECE:
                    end = position + MAX_PIECE - (buffer[position + MAX_PIECE - 1] == 0x0D)
                elif final:
                    end = size
                else:
                    break
                piece = bytes(buffer[position:end])
                yield piece, walker.feed(piece)
            else:
                candidate = _CANDIDATE.search(buffer, position)
                if candidate is not None:
                    end = candidate.end()
                elif final:
                    end = size
                else:
                    # Keep what may begin a delimiter line, and never split a CRLF.
                    end = size - 3
                    end -= end > position and buffer[end - 1] == 0x0D
                    if end <= position:
                        break
                piece = bytes(buffer[position:end])
                walker.skip(piece)
                yield piece, None
            position = end
        del buffer[:position]


@dataclass(frozen=True, slots=True)
class MessagePart:
    """One MIME entity of a message: the message itself (``depth`` 0), a multipart container,
    or a leaf such as a text or an attachment.

    ``headers`` are the entity's own header fields, parsed like :class:`~tsmtp.Headers`
    (``headers.get_filename()``, ``headers.get_param("name")``...). ``size`` is the octets of
    its body as stored, still transfer-encoded.
    """

    content_type: str
    headers: EmailMessage
    depth: int
    size: int
    is_multipart: bool
    _read: Callable[[], Iterator[bytes]]

    @property
    def filename(self) -> str | None:
        """The file name (``Content-Disposition`` filename, or the ``Content-Type`` name)."""
        return self.headers.get_filename()

    @property
    def disposition(self) -> str | None:
        """``"attachment"``, ``"inline"`` or None."""
        return self.headers.get_content_disposition()

    @property
    def charset(self) -> str | None:
        return self.headers.get_content_charset()

    @property
    def transfer_encoding(self) -> str:
        """The ``Content-Transfer-Encoding``, lower-cased (``"7bit"`` when there is none)."""
        return _transfer_encoding(self.headers)

    def raw_chunks(self) -> Iterator[bytes]:
        """The body of this part as stored (transfer-encoded), in chunks."""
        return self._read()

    def decoded_chunks(self) -> Iterator[bytes]:
        """The body with its transfer encoding (base64, quoted-printable) undone, in chunks."""
        encoding = self.transfer_encoding
        if encoding == "base64":
            return _decode_base64(self._read())
        if encoding == "quoted-printable":
            return (binascii.a2b_qp(line) for line in lines(self._read()))
        return self._read()

    def decoded(self) -> bytes:
        """The whole decoded body (at most :attr:`size` octets)."""
        return b"".join(self.decoded_chunks())

    def text(self, errors: str = "replace") -> str:
        """The decoded body as text, in the part's charset (UTF-8 when it names none it knows)."""
        data = self.decoded()
        try:
            return data.decode(self.charset or "utf-8", errors)
        except LookupError:
            return data.decode("utf-8", errors)


def _decode_base64(chunks: Iterator[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        data = pending + _NOT_BASE64.sub(b"", chunk)
        usable = len(data) - len(data) % 4
        if usable:
            yield binascii.a2b_base64(data[:usable])
        pending = data[usable:]
    if len(pending) > 1:
        yield binascii.a2b_base64(pending + b"=" * (4 - len(pending)))


def walk(
    top: EmailMessage, body: Iterable[bytes], read: Callable[[int, int], Iterator[bytes]]
) -> list[MessagePart]:
    """The MIME entities of a message whose header is ``top`` and body ``body``, in order.

    ``read(start, end)`` gives the octets of the body between two offsets, for reading a part
    later. Raises :class:`MessageTooComplex` past :data:`MAX_PARTS` or :data:`MAX_DEPTH`.
    """
    walker = _Walker(top)
    for _ in _drive(walker, body):
        pass
    walker.finish()
    parts = []
    for node in walker.nodes:
        assert node.fields is not None
        start, end = node.body_start, node.end

        def reader(start: int = start, end: int = end) -> Iterator[bytes]:
            return read(start, end)

        parts.append(
            MessagePart(
                node.content_type,
                node.fields,
                node.depth,
                end - start,
                node.content_type.startswith("multipart/") and node.boundary is not None,
                reader,
            )
        )
    return parts


def count_banner_parts(top: EmailMessage, body: Iterable[bytes], banner: Banner) -> int:
    """How many parts of the message :func:`banner_filter` would add ``banner`` to."""
    walker = _Walker(top, banner)
    for _ in _drive(walker, body):
        pass
    walker.finish()
    return sum(1 for node in walker.nodes if node.banner is not None)


def banner_filter(top: EmailMessage, banner: Banner) -> BodyFilter:
    """A body filter adding ``banner`` at the end of each text part that can take it.

    The line ending before a delimiter belongs to the delimiter (RFC 2046 5.1.1), so the banner
    goes before it, right after the part's last octet: each piece's line ending is held back
    until it is known whether a delimiter follows.
    """

    def run(chunks: Iterator[bytes]) -> Iterator[bytes]:
        walker = _Walker(top, banner)
        held = b""  # the line ending of the last piece, not yet passed on
        recent = b""  # the last octets passed on before it
        for piece, ended in _drive(walker, chunks):
            if ended is not None and ended.banner is not None:
                start = walker.offset - len(piece)
                if held and ended.end == start - len(held):
                    yield _banner_prefix(recent, ended) + ended.banner + held
                else:  # an empty part: the banner is all of it
                    yield held + ended.banner + b"\r\n"
                held, recent = b"", b"\n"
            length = _ending(piece)
            body = piece[: len(piece) - length]
            yield held + body
            recent = (recent + held + body)[-4:]
            held = piece[len(piece) - length :]
        ended = walker.finish()
        if ended is not None and ended.banner is not None:
            yield held + _banner_prefix(recent + held, ended) + ended.banner + b"\r\n"
        else:
            yield held

    return run


def _banner_prefix(recent: bytes, node: _Node) -> bytes:
    """What goes between a part's last octets (ending in ``recent``) and its banner: a line
    ending when the last line has none, and another when a quoted-printable soft line break
    (a last line ending in ``=``) would join the banner to it."""
    assert node.fields is not None
    prefix = b"" if not recent or _ending(recent) else b"\r\n"
    last_line = recent[: len(recent) - _ending(recent)]
    if _transfer_encoding(node.fields) == "quoted-printable" and last_line.endswith(b"="):
        prefix += b"\r\n"
    return prefix
