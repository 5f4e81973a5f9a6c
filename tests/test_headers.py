"""``Transaction.header()`` gives decoded ``str`` values for every message a client may send:
raw UTF-8, RFC 2047 encoded words, folded lines, and malformed structured fields."""

from __future__ import annotations

from email.headerregistry import AddressHeader
from typing import ClassVar

import pytest

from tsmtp import Connection, Outcome, Plugin, Verdict, override
from tsmtp.testing import make_connection, make_transaction, running_server

from .helpers import AcceptAll, MemoryQueue

SUBJECTS = {
    "raw UTF-8": ("Grüße aus Köln, ÄRGER".encode(), "grüße aus köln, ärger"),
    "encoded word": (b"=?utf-8?q?Gr=C3=BC=C3=9Fe?= =?iso-8859-1?b?Sk9SRw==?=", "grüßejorg"),
    "folded": (b"first line\r\n  and the\r\n\tcontinuation", "first line  and the\tcontinuation"),
    "latin-1 without a charset": (b"caf\xe9", "caf\ufffd"),
}


def header_of(raw: bytes) -> dict[str, str]:
    txn = make_transaction(make_connection(), message=raw)
    return {name: value for name, value in txn.header().items()}


@pytest.mark.parametrize("kind", sorted(SUBJECTS))
def test_subjects_read_as_decoded_unfolded_text(kind: str) -> None:
    raw, lowered = SUBJECTS[kind]
    txn = make_transaction(make_connection(), message=b"Subject: " + raw + b"\r\n\r\nbody\r\n")
    subject = txn.header().get("Subject", "")
    assert type(subject.lower()) is str
    assert subject.lower() == lowered
    subject.encode()  # no lone surrogates left over from undecodable bytes


def test_added_headers_are_read_too() -> None:
    txn = make_transaction(make_connection(), message=b"Subject: s\r\n\r\nbody\r\n")
    txn.add_header("X-Score", "Grüße\n second line")
    header = txn.header()
    assert header["X-Score"] == "Grüße second line"
    assert header["Subject"] == "s"


def test_address_fields_are_parsed() -> None:
    raw = "From: Jörg Müller <joerg@example.org>\r\nTo: a@example.org, b@example.org\r\n"
    txn = make_transaction(make_connection(), message=raw.encode() + b"\r\nbody\r\n")
    header = txn.header()
    assert header["From"] == "Jörg Müller <joerg@example.org>"
    to = header["To"]
    assert isinstance(to, AddressHeader)
    assert [str(a) for a in to.addresses] == ["a@example.org", "b@example.org"]


@pytest.mark.parametrize(
    "field",
    [
        b"From: <",
        b"To: ?<",
        b"Resent-From: %uut==<",
        b"Message-ID: <<q?\\'\"*<",
        b"Content-Type: ?;\x7f?@.?>\x00f)c==)f);b*",
        b"Content-Disposition: ,=;b*",
        b"Date: not a date at all",
    ],
)
def test_a_malformed_structured_field_reads_as_plain_text(field: bytes) -> None:
    # The standard library's structured parsers raise on these (on Content-Type, already while
    # parsing the section); header() must not.
    name, _, value = field.partition(b": ")
    header = header_of(field + b"\r\nSubject: still here\r\n\r\nbody\r\n")
    assert header[name.decode()] == value.decode("utf-8", "replace")
    assert header["Subject"] == "still here"


def test_only_the_header_section_is_parsed() -> None:
    header = header_of(b"Subject: s\r\n\r\nNot-A-Header: body text\r\n")
    assert list(header) == ["Subject"]


class LowerSubject(Plugin):
    """Records each message's Subject, lower-cased, the way a content filter reads it."""

    seen: ClassVar[list[str]] = []

    @override
    async def hook_data_post(self, connection: Connection) -> Outcome:
        txn = connection.transaction
        assert txn is not None
        self.seen.append(txn.header().get("Subject", "").lower())
        return Verdict.CONT


async def test_a_plugin_reads_every_kind_of_subject_through_the_session() -> None:
    LowerSubject.seen.clear()
    async with running_server([AcceptAll, LowerSubject, MemoryQueue]) as srv:
        client = await srv.connect()
        await client.command("EHLO client.test")
        for kind in sorted(SUBJECTS):
            raw, _ = SUBJECTS[kind]
            assert (await client.command("MAIL FROM:<a@client.test> SMTPUTF8")).code == 250
            assert (await client.command("RCPT TO:<r@example.org>")).code == 250
            assert (await client.command("DATA")).code == 354
            reply = await client.command(b"Subject: " + raw + b"\r\n\r\nbody\r\n.")
            assert reply.code == 250, (kind, reply)
    assert LowerSubject.seen == [SUBJECTS[kind][1] for kind in sorted(SUBJECTS)]
    assert len(MemoryQueue.stored) == len(SUBJECTS)


@pytest.mark.parametrize("value", ["a\nX-Injected: 1", "a\r\nX-Injected: 1", "a\rb", "a\0b"])
def test_add_header_refuses_a_value_that_would_start_another_field(value: str) -> None:
    txn = make_transaction(make_connection())
    with pytest.raises(ValueError, match="not a \\(folded\\) field body"):
        txn.add_header("X-Test", value)
    assert txn.added_headers == b""


def test_add_header_keeps_folded_values_and_checks_the_name() -> None:
    txn = make_transaction(make_connection())
    txn.add_header("X-Test", "one\n\ttwo\r\n three")
    assert txn.added_headers == b"X-Test: one\r\n\ttwo\r\n three\r\n"
    for name in ("", "X Test", "X:Test", "X-T\u00e9st"):
        with pytest.raises(ValueError, match="bad header name"):
            txn.add_header(name, "v")
