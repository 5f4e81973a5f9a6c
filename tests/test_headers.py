"""The header API of a transaction: ``txn.headers`` (and ``txn.header()``) read decoded ``str``
values for every message a client may send (raw UTF-8, RFC 2047 encoded words, folded lines,
malformed structured fields), and edits show in the stored message with every untouched octet
kept."""

from __future__ import annotations

import email.policy
import re
from collections.abc import Callable
from email.headerregistry import AddressHeader
from email.parser import BytesParser
from typing import ClassVar

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tsmtp import Connection, MailParams, Outcome, Plugin, Transaction, Verdict, override
from tsmtp.headers import MAX_HEADER_SECTION
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
    async def hook_data_post(self, connection: Connection, transaction: Transaction) -> Outcome:
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


# --- editing --------------------------------------------------------------------------------

RAW = (
    b"Received: from a by b;\r\n\tMon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"X-Spam:   yes \r\n"
    b"x-spam: again\r\n"
    b"To: a@example.org\r\n"
    b"\r\n"
    b"body line\r\n"
)


def stored(txn: Transaction) -> bytes:
    data = b"".join(txn.message_chunks())
    assert len(data) == txn.message_size()
    return data


def test_reading_is_by_name_without_regard_to_case() -> None:
    txn = make_transaction(make_connection(), message=RAW)
    assert txn.headers.get("SUBJECT") == "Grüße"
    assert txn.headers.get_all("X-SPAM") == ["yes ", "again"]
    assert txn.headers.get("missing") is None
    assert txn.headers.get_all("missing") == []
    assert "to" in txn.headers and "cc" not in txn.headers
    assert list(txn.headers) == ["Received", "Subject", "X-Spam", "x-spam", "To"]
    assert len(txn.headers) == 5
    to = txn.headers.get("To")
    assert isinstance(to, AddressHeader)
    assert [str(a) for a in to.addresses] == ["a@example.org"]


def test_add_goes_at_the_end_of_the_header_section_and_prepend_on_top() -> None:
    txn = make_transaction(make_connection(), message=RAW)
    txn.headers.add("X-Added", "first")
    txn.headers.add("X-Added", "second")
    txn.headers.prepend("Received", "by one")
    txn.headers.prepend("Received", "by two")
    head, _, body = RAW.partition(b"\r\n\r\n")
    assert stored(txn) == (
        b"Received: by two\r\nReceived: by one\r\n"
        + head
        + b"\r\nX-Added: first\r\nX-Added: second\r\n\r\n"
        + body
    )
    assert txn.headers.get_all("received")[:2] == ["by two", "by one"]
    assert txn.headers.get_all("X-Added") == ["first", "second"]


def test_remove_counts_and_leaves_every_other_octet_as_it_was() -> None:
    txn = make_transaction(make_connection(), message=RAW)
    txn.headers.add("X-Spam", "added")
    assert txn.headers.remove("x-SPAM") == 3
    assert txn.headers.remove("X-Spam") == 0
    assert stored(txn) == RAW.replace(b"X-Spam:   yes \r\nx-spam: again\r\n", b"")
    assert txn.header().get_all("X-Spam") is None


def test_replace_keeps_the_place_of_the_first_and_drops_the_others() -> None:
    txn = make_transaction(make_connection(), message=RAW)
    txn.headers.replace("X-SPAM", "no")
    assert stored(txn) == RAW.replace(b"X-Spam:   yes \r\nx-spam: again\r\n", b"X-SPAM: no\r\n")
    txn.headers.replace("X-New", "added at the end")
    assert stored(txn).endswith(
        b"To: a@example.org\r\nX-New: added at the end\r\n\r\nbody line\r\n"
    )


def test_an_unchanged_message_is_the_received_one() -> None:
    txn = make_transaction(make_connection(), message=RAW)
    assert txn.headers.get("Subject") == "Grüße"
    assert txn.headers.remove("absent") == 0
    assert not txn.headers.changed
    assert stored(txn) == RAW
    assert txn.message_size() == txn.data_size == len(RAW)


@pytest.mark.parametrize("value", ["a\nX-Injected: 1", "a\r\nX-Injected: 1", "a\rb", "a\0b"])
def test_values_that_would_start_another_field_are_refused(value: str) -> None:
    txn = make_transaction(make_connection(), message=RAW)
    edits: list[Callable[[str, str], object]] = [
        txn.headers.add,
        txn.headers.prepend,
        txn.headers.replace,
        txn.add_header,
    ]
    for edit in edits:
        with pytest.raises(ValueError, match="not a \\(folded\\) field body"):
            edit("X-Test", value)
    assert not txn.headers.changed
    assert stored(txn) == RAW


@pytest.mark.parametrize("name", ["", "X Test", "X:Test", "X-T\u00e9st", "X\0", "X\r\nY"])
def test_names_that_are_not_field_names_are_refused(name: str) -> None:
    txn = make_transaction(make_connection(), message=RAW)
    for edit in (txn.headers.add, txn.headers.prepend, txn.headers.replace):
        with pytest.raises(ValueError, match="bad header name"):
            edit(name, "v")
    assert stored(txn) == RAW


def test_folded_values_are_kept_as_given() -> None:
    txn = make_transaction(make_connection(), message=b"Subject: s\r\n\r\nbody\r\n")
    txn.headers.add("X-Test", "one\n\ttwo\r\n three")
    assert stored(txn) == b"Subject: s\r\nX-Test: one\r\n\ttwo\r\n three\r\n\r\nbody\r\n"
    assert txn.headers.get("X-Test") == "one\ttwo three"


@pytest.mark.parametrize("value", ["one\n \ttwo\n ", "one\n\t\nthree", "x" * 1000])
def test_blank_continuation_lines_and_overlong_lines_are_refused(value: str) -> None:
    txn = make_transaction(make_connection(), message=b"Subject: s\r\n\r\nbody\r\n")
    with pytest.raises(ValueError):
        txn.headers.add("X-Test", value)
    assert not txn.headers.changed


def test_non_ascii_values_are_encoded_unless_the_transaction_is_smtputf8() -> None:
    plain = make_transaction(make_connection(), message=b"Subject: s\r\n\r\nbody\r\n")
    plain.headers.add("X-Greeting", "Grüße aus Köln")
    plain.headers.add("From", "Jörg Müller <joerg@example.org>")
    data = stored(plain)
    assert data.isascii()
    assert b"X-Greeting: =?utf-8?" in data
    assert plain.headers.get("X-Greeting") == "Grüße aus Köln"
    assert plain.message()["From"] == "Jörg Müller <joerg@example.org>"

    utf8 = make_transaction(
        make_connection(), message=b"Subject: s\r\n\r\nbody\r\n", params=MailParams(smtputf8=True)
    )
    utf8.headers.add("X-Greeting", "Grüße aus Köln")
    assert "X-Greeting: Grüße aus Köln\r\n".encode() in stored(utf8)


def test_fields_added_before_the_message_arrives_go_around_it() -> None:
    txn = make_transaction(make_connection())
    txn.headers.add("X-Early", "at the end")
    txn.headers.prepend("X-Trace", "on top")
    assert txn.headers.get_all("X-Early") == ["at the end"]
    txn.body.write(RAW)
    head, _, body = RAW.partition(b"\r\n\r\n")
    assert stored(txn) == (
        b"X-Trace: on top\r\n" + head + b"\r\nX-Early: at the end\r\n\r\n" + body
    )
    assert txn.headers.get("Subject") == "Grüße"


def test_the_message_may_not_grow_after_its_received_fields_were_edited() -> None:
    txn = make_transaction(make_connection(), message=b"Subject: s\r\n")
    txn.headers.remove("Subject")
    txn.body.write(b"\r\nmore\r\n")
    with pytest.raises(RuntimeError, match="grew"):
        txn.headers.get("Subject")


def test_a_message_without_a_header_section_keeps_its_first_line() -> None:
    txn = make_transaction(make_connection(), message=b"no header here\r\nTo: x\r\n")
    assert txn.headers.get("To") is None
    txn.add_header("Received", "by me")
    assert stored(txn) == b"Received: by me\r\nno header here\r\nTo: x\r\n"


def test_a_message_that_ends_inside_its_header() -> None:
    txn = make_transaction(make_connection(), message=b"Subject: no line ending")
    txn.headers.add("X-A", "1")
    assert stored(txn) == b"Subject: no line ending\r\nX-A: 1\r\n"
    txn = make_transaction(make_connection(), message=b"Subject: no line ending")
    txn.headers.prepend("X-A", "1")
    assert stored(txn) == b"X-A: 1\r\nSubject: no line ending"


def test_envelope_lines_and_stray_continuations_are_kept_but_are_no_fields() -> None:
    raw = b" stray\r\nFrom someone Mon Jan 1\r\n:nameless\r\nSubject: s\r\n\r\nbody\r\n"
    txn = make_transaction(make_connection(), message=raw)
    assert list(txn.headers) == ["Subject"]
    txn.headers.add("X-A", "1")
    assert stored(txn) == raw.replace(b"\r\n\r\n", b"\r\nX-A: 1\r\n\r\n")


def test_line_endings_of_the_received_header_are_kept() -> None:
    raw = b"Subject: lf\nX-Cr: cr\rX-Crlf: crlf\r\nX-Folded: a\n b\r\n\nbody\n"
    txn = make_transaction(make_connection(), message=raw)
    assert txn.headers.get("X-Folded") == "a b"
    assert txn.headers.get("X-Cr") == "cr"
    assert txn.headers.remove("X-Crlf") == 1
    assert stored(txn) == b"Subject: lf\nX-Cr: cr\rX-Folded: a\n b\r\n\nbody\n"


def test_a_long_header_section_is_read_whole() -> None:
    filler = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"x" * 200) for i in range(1000))
    raw = b"Subject: s\r\n" + filler + b"X-Last: here\r\n\r\nbody\r\n"
    assert len(raw) > 200_000
    txn = make_transaction(make_connection(), message=raw)
    assert txn.headers.get("X-Last") == "here"
    assert txn.headers.remove("X-Last") == 1
    assert stored(txn) == raw.replace(b"X-Last: here\r\n", b"")


def test_fields_past_the_limit_of_the_header_section_are_stored_unchanged() -> None:
    filler = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"x" * 1000) for i in range(1100))
    raw = b"Subject: s\r\n" + filler + b"X-Last: here\r\n\r\nbody\r\n"
    assert len(raw) > MAX_HEADER_SECTION
    txn = make_transaction(make_connection(), message=raw)
    assert txn.headers.get("X-Last") is None, "past the limit"
    assert txn.headers.get("Subject") == "s"
    txn.add_header("Received", "by me")
    assert stored(txn) == b"Received: by me\r\n" + raw
    txn.discard()


def test_header_gives_the_fields_as_they_will_be_stored() -> None:
    txn = make_transaction(make_connection(), message=RAW)
    txn.headers.remove("Received")
    txn.headers.add("X-New", "v")
    header = txn.header()
    assert header.keys() == ["Subject", "X-Spam", "x-spam", "To", "X-New"]
    assert header["Subject"] == "Grüße"


_LINE_ENDINGS = st.sampled_from([b"\r\n", b"\n", b"\r", b""])
_PIECES = st.sampled_from(
    [b"Subject: hi", b"X-A: 1", b" folded", b"\tfolded", b"", b"body", b"From x", b":", b"a:b"]
)
_MESSAGES = st.one_of(
    st.binary(max_size=300),
    st.lists(st.tuples(_PIECES, _LINE_ENDINGS), max_size=12).map(
        lambda lines: b"".join(piece + ending for piece, ending in lines)
    ),
)


@settings(max_examples=300, deadline=None)
@given(_MESSAGES)
def test_a_prepended_field_is_all_that_changes(raw: bytes) -> None:
    txn = make_transaction(make_connection(), message=raw)
    assert stored(txn) == raw
    txn.headers.prepend("Received", "by me")
    assert stored(txn) == b"Received: by me\r\n" + raw


@settings(max_examples=300, deadline=None)
@given(_MESSAGES)
def test_an_added_field_is_all_that_changes(raw: bytes) -> None:
    txn = make_transaction(make_connection(), message=raw)
    txn.headers.add("X-Added", "yes")
    data = stored(txn)
    position = data.index(b"X-Added: yes\r\n")
    before, after = data[:position], data[position + len(b"X-Added: yes\r\n") :]
    if before.endswith(b"\r\n") and not raw.startswith(before):
        before = before[:-2]  # the line ending given to a last field that had none
    assert before + after == raw
    assert txn.headers.get_all("x-added") == ["yes"]


@settings(max_examples=500, deadline=None)
@given(_MESSAGES)
def test_fields_read_as_the_standard_parser_reads_them(raw: bytes) -> None:
    # A continuation line right after a "From " line is the one case read differently: the
    # standard parser glues it to the field before the "From " line.
    assume(not re.search(rb"(^|[\r\n])From [^\r\n]*(\r\n|\r|\n)[ \t]", raw))
    python = BytesParser(policy=email.policy.default).parsebytes(raw)
    txn = make_transaction(make_connection(), message=raw)
    assert [(name, str(value)) for name, value in txn.headers.items()] == [
        (name, str(value)) for name, value in python.items()
    ]
