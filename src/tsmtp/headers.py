"""The header section of a message: read as decoded text, edited without copying the body.

A received header section is split into its fields, each kept as the exact octets that arrived.
Edits change that list of fields (and only it): fields nobody touched are stored exactly as they
came, and the body is never copied for a header change. Reading follows ``email.policy.default``:
values are ``str``, unfolded, with RFC 2047 encoded words and raw UTF-8 decoded.
"""

from __future__ import annotations

import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from typing import cast

from typing_extensions import override

from .spool import Spool

#: The header section is looked for in the first this many octets of a message; fields past it
#: are stored unchanged but are not seen (nor editable) through :class:`Headers`.
MAX_HEADER_SECTION = 1 << 20

#: RFC 5322 2.1.1: a line of a message is at most 998 octets, line ending excluded.
MAX_LINE = 998


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
            return self.as_text(name, value)

    def as_text(self, name: str, value: str) -> BaseHeader:
        return self._as_text(name, value)


_REGISTRY = _ForgivingHeaderRegistry()
#: ``email.policy.default`` with the forgiving header classes and CRLF line endings.
POLICY = email.policy.default.clone(header_factory=_REGISTRY, linesep="\r\n")
_ENCODING_POLICY = POLICY.clone(utf8=False, max_line_length=78)

#: RFC 5322 3.6.8: printable ASCII except the colon.
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
#: What the standard parser takes for the start of a field (a line without one ends the section).
_FIELD_START = re.compile(rb"[\x21-\x39\x3b-\x7e]*:")
_LINE_END = re.compile(rb"\r\n|\r|\n")
_BLANK = frozenset({b"\r\n", b"\n", b"\r"})
#: A field that ends in a line ending, with its continuation lines.
_WHOLE_FIELD = re.compile(
    rb"([\x21-\x39\x3b-\x7e]+):[^\r\n]*(?:\r\n|\r|\n)(?:[ \t][^\r\n]*(?:\r\n|\r|\n))*"
)


@dataclass(slots=True, eq=False)
class _Field:
    """One field as stored: ``raw`` is its octets, continuation lines and line ending included.

    ``name`` is None for a line kept in the section that is not a field (a ``From `` envelope
    line, a continuation line with no field before it, a line starting with a colon).
    """

    name: str | None
    raw: bytes
    _value: BaseHeader | None = None

    @property
    def value(self) -> BaseHeader:
        if self._value is None:
            text = self.raw.decode("ascii", "surrogateescape")
            name, value = POLICY.header_source_parse([text])
            self._value = cast(BaseHeader, POLICY.header_fetch_parse(name, value))
        return self._value

    def is_named(self, lowered: str) -> bool:
        return self.name is not None and self.name.lower() == lowered


@dataclass(frozen=True, slots=True)
class _Section:
    fields: list[_Field]
    #: Offset of what follows the fields: the blank line, or the body when there is none.
    end: int
    #: Offset of the body: after the blank line.
    body_start: int
    #: The section went on past :data:`MAX_HEADER_SECTION`.
    truncated: bool


def _split(head: bytes, complete: bool) -> _Section | None:
    """Split the header section at the start of ``head`` as the standard parser would.

    ``complete`` says ``head`` is the whole message. None means more octets are needed.
    """
    fields: list[_Field] = []
    position = 0
    while position < len(head):
        whole = _WHOLE_FIELD.match(head, position)
        if whole is not None and (complete or whole.end() < len(head)):
            # The usual case, one field with its continuation lines in one step.
            fields.append(_Field(whole.group(1).decode("ascii"), whole.group()))
            position = whole.end()
            continue
        ending = _LINE_END.search(head, position)
        if ending is None or (ending.group() == b"\r" and ending.end() == len(head)):
            if not complete:
                return None
            next_position = len(head)
        else:
            next_position = ending.end()
        line = head[position:next_position]
        if line in _BLANK:
            return _Section(fields, position, next_position, truncated=False)
        if line[:1] in (b" ", b"\t"):
            if fields:
                fields[-1].raw += line
            else:
                fields.append(_Field(None, line))
        elif line.startswith(b"From "):
            fields.append(_Field(None, line))
        elif _FIELD_START.match(line):
            name = line[: line.index(b":")].decode("ascii")
            fields.append(_Field(name or None, line))
        else:
            return _Section(fields, position, position, truncated=False)
        position = next_position
    return _Section(fields, position, position, truncated=False)


def _read_section(spool: Spool) -> _Section:
    size = 1 << 16
    while True:
        head = spool.head(size)
        complete = len(head) >= spool.size
        section = _split(head, complete)
        if section is not None:
            return section
        if size >= MAX_HEADER_SECTION:
            # Keep the whole lines read so far; the rest counts as following the section.
            cut = _split(head[: head.rfind(b"\n") + 1], complete=True)
            assert cut is not None
            return _Section(cut.fields, cut.end, cut.end, truncated=True)
        size *= 4


def check_name(name: str) -> None:
    """Raise ValueError unless ``name`` is an RFC 5322 field name."""
    if not _FIELD_NAME.fullmatch(name):
        raise ValueError(f"bad header name {name!r}")


def encode_field(name: str, value: str, *, utf8: bool = False) -> bytes:
    """The octets of the field ``name: value``, ending in CRLF.

    ``value`` may be folded (a line break followed by a space or a tab); any other line break,
    NUL, a continuation line of nothing but white space and lines over 998 octets raise
    ValueError. An ASCII value is written as given (its folding kept, so a signature computed
    over it stays valid); any other value is written as UTF-8 when ``utf8`` (an SMTPUTF8
    message), otherwise in RFC 2047 encoded words, folded at 78 characters.
    """
    check_name(name)
    lines = value.replace("\r\n", "\n").split("\n")
    if (
        "\r" in value.replace("\r\n", "")
        or "\0" in value
        or any(not line.startswith((" ", "\t")) or not line.strip(" \t") for line in lines[1:])
    ):
        raise ValueError(f"header {name}: value {value!r} is not a (folded) field body")
    if value.isascii() or utf8:
        field = f"{name}: " + "\r\n".join(lines) + "\r\n"
        raw = field.encode("utf-8")
        if any(len(line) > MAX_LINE for line in raw.split(b"\r\n")):
            raise ValueError(
                f"header {name}: a line is longer than {MAX_LINE} octets; fold the value"
            )
        return raw
    unfolded = "".join(lines)
    try:
        text = _REGISTRY(name, unfolded).fold(policy=_ENCODING_POLICY)
    except Exception:  # a structured field the folder cannot handle: encode it as text
        text = _REGISTRY.as_text(name, unfolded).fold(policy=_ENCODING_POLICY)
    return text.encode("ascii")


class Headers:
    """The header section of a transaction's message, as it will be stored.

    Reading follows ``email.policy.default``: :meth:`get` gives the value as ``str`` (an
    :mod:`email.headerregistry` header object, so an address field has ``.addresses``),
    unfolded, with encoded words and raw UTF-8 decoded; names are matched without regard to
    case. A field that cannot be parsed as its kind reads as plain text.

    Edits show in :meth:`tsmtp.Transaction.message_chunks`, the message queue plugins store.
    Fields added before the message has arrived (in a ``mail`` or ``rcpt`` hook) are kept and
    placed around the received section once it is there.
    """

    __slots__ = (
        "_end",
        "_loaded_size",
        "_section",
        "_section_edited",
        "_section_info",
        "_spool",
        "_top",
        "_utf8",
    )

    def __init__(self, spool: Spool, *, utf8: bool = False) -> None:
        self._spool = spool
        self._utf8 = utf8
        self._top: list[_Field] = []
        self._section: list[_Field] = []
        self._end: list[_Field] = []
        self._loaded_size = -1
        self._section_edited = False
        self._section_info: _Section | None = None

    # --- reading --------------------------------------------------------------------------------

    def get(self, name: str) -> str | None:
        """The first field called ``name`` (decoded), or None."""
        lowered = name.lower()
        return next((f.value for f in self._fields() if f.is_named(lowered)), None)

    def get_all(self, name: str) -> list[str]:
        """Every field called ``name``, decoded, in the order they will be stored."""
        lowered = name.lower()
        return [f.value for f in self._fields() if f.is_named(lowered)]

    def items(self) -> list[tuple[str, str]]:
        """Every field as ``(name, decoded value)``, in the order they will be stored."""
        return [(f.name, f.value) for f in self._fields() if f.name is not None]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        """The field names, in order (a name once for each field)."""
        return (name for name, _ in self.items())

    def __len__(self) -> int:
        return sum(1 for f in self._fields() if f.name is not None)

    def as_message(self) -> EmailMessage:
        """The fields as a new :class:`email.message.EmailMessage` with no body."""
        message = EmailMessage(policy=POLICY)
        for f in self._fields():
            if f.name is not None:
                message.set_raw(f.name, f.value)
        return message

    # --- editing --------------------------------------------------------------------------------

    def add(self, name: str, value: str) -> None:
        """Add a field at the end of the header section.

        ``value`` may be folded (a line break followed by a space or a tab); other line breaks,
        a bare CR and NUL raise ValueError, as does a name that is not a field name. An ASCII
        value is stored as given; others are encoded (RFC 2047, or raw UTF-8 in an SMTPUTF8
        transaction).
        """
        self._end.append(_Field(name, encode_field(name, value, utf8=self._utf8)))

    def prepend(self, name: str, value: str) -> None:
        """Add a field at the top of the message, above every other (trace fields such as
        ``Received`` go there, newest first). Checked and encoded as :meth:`add`."""
        self._top.insert(0, _Field(name, encode_field(name, value, utf8=self._utf8)))

    def remove(self, name: str) -> int:
        """Remove every field called ``name``; return how many there were."""
        lowered = name.lower()
        self._load()
        removed = 0
        for fields in (self._top, self._section, self._end):
            kept = [f for f in fields if not f.is_named(lowered)]
            if len(kept) != len(fields):
                removed += len(fields) - len(kept)
                self._section_edited |= fields is self._section
                fields[:] = kept
        return removed

    def replace(self, name: str, value: str) -> None:
        """Give the first field called ``name`` the value ``value`` where it stands, and remove
        the others of that name; with none, add the field at the end (as :meth:`add`)."""
        new = _Field(name, encode_field(name, value, utf8=self._utf8))
        lowered = name.lower()
        self._load()
        for fields in (self._top, self._section, self._end):
            for i, f in enumerate(fields):
                if f.is_named(lowered):
                    fields[i] = new
                    self._section_edited |= fields is self._section
                    self._remove_after(new, lowered)
                    return
        self._end.append(new)

    def _remove_after(self, field: _Field, lowered: str) -> None:
        seen = False
        for fields in (self._top, self._section, self._end):
            kept: list[_Field] = []
            for f in fields:
                if f is field:
                    seen = True
                elif seen and f.is_named(lowered):
                    self._section_edited |= fields is self._section
                    continue
                kept.append(f)
            fields[:] = kept

    # --- what is stored -------------------------------------------------------------------------

    @property
    def changed(self) -> bool:
        """True once a field was added, removed or replaced."""
        return bool(self._top or self._end or self._section_edited)

    def prepended(self) -> bytes | None:
        """The fields prepended on top of the received message when they are the only change
        (the usual case: the server's ``Received``), else None."""
        if self._end or self._section_edited:
            return None
        return b"".join(f.raw for f in self._top)

    def section(self) -> _Section:
        """Where the received header section ends (loaded on first use)."""
        self._load()
        assert self._section_info is not None
        return self._section_info

    def as_bytes(self, *, followed: bool = True) -> bytes:
        """The header section as it will be stored, without the blank line after it.

        A field missing its line ending (a message that ends inside its header) gets a CRLF when
        another field follows it, or anything else when ``followed``.
        """
        fields = list(self._fields())
        out = bytearray()
        for i, f in enumerate(fields):
            out += f.raw
            if (followed or i + 1 < len(fields)) and not f.raw.endswith((b"\n", b"\r")):
                out += b"\r\n"
        return bytes(out)

    def _fields(self) -> Iterator[_Field]:
        self._load()
        yield from self._top
        yield from self._section
        yield from self._end

    def _load(self) -> None:
        size = self._spool.size
        if self._loaded_size == size:
            return
        if self._section_edited:
            raise RuntimeError("the message grew after its received header fields were edited")
        self._section_info = _read_section(self._spool)
        self._section = list(self._section_info.fields)
        self._loaded_size = size


def parse_fields(raw: bytes) -> EmailMessage:
    """A header section (the octets before its blank line) as an EmailMessage with no body."""
    section = _split(raw, complete=True)
    assert section is not None
    message = EmailMessage(policy=POLICY)
    for f in section.fields:
        if f.name is not None:
            message.set_raw(f.name, f.value)
    return message


def is_header_line(line: bytes) -> bool:
    """Whether ``line`` continues a header section (a field, a continuation, a ``From `` line)."""
    return line[:1] in (b" ", b"\t") or line.startswith(b"From ") or bool(_FIELD_START.match(line))
