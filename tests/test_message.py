"""The message API below the headers: the stored form with body filters, banners that respect
MIME, the MIME walk of ``parts()``, and ``message()`` bounded by its size limit."""

from __future__ import annotations

import base64
import email.policy
import hashlib
import itertools
import threading
import tracemalloc
from collections.abc import Iterable, Iterator
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tsmtp import BodyFilter, MessageTooComplex, MessageTooLarge, Transaction, line_filter
from tsmtp.headers import parse_fields
from tsmtp.message import Banner, _Walker, banner_filter, lines
from tsmtp.spool import Spool
from tsmtp.testing import make_connection, make_transaction


def stored(txn: Transaction) -> bytes:
    data = b"".join(txn.message_chunks())
    assert len(data) == txn.message_size()
    return data


def parse(data: bytes) -> EmailMessage:
    return BytesParser(policy=email.policy.default).parsebytes(data)


def smtp_bytes(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=email.policy.SMTP)


def leaves(message: EmailMessage) -> list[EmailMessage]:
    return [part for part in message.walk() if not part.is_multipart()]


# --- lines and the spool --------------------------------------------------------------------

_CHUNKS = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"x", b"\r")), max_size=20)


@settings(max_examples=300, deadline=None)
@given(_CHUNKS, st.integers(min_value=2, max_value=16))
def test_lines_recut_chunks_without_losing_or_splitting_a_crlf(
    chunks: list[bytes], max_line: int
) -> None:
    pieces = list(lines(chunks, max_line=max_line))
    assert b"".join(pieces) == b"".join(chunks)
    for piece in pieces[:-1]:
        assert piece.endswith((b"\n", b"\r")) or len(piece) >= max_line - 1
        assert len(piece) <= max_line or piece.endswith((b"\n", b"\r"))
    for first, second in itertools.pairwise(pieces):
        assert not (first.endswith(b"\r") and second.startswith(b"\n")), "a CRLF was split"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=50), max_size=10),
    st.integers(0, 600),
    st.integers(0, 600),
    st.sampled_from([0, 1 << 20]),
)
def test_spool_reads_any_range_in_memory_and_on_disk(
    writes: list[bytes], start: int, end: int, threshold: int
) -> None:
    spool = Spool(threshold)
    for data in writes:
        spool.write(data)
    try:
        content = b"".join(writes)
        assert spool.in_memory is (threshold > 0 or not content)
        assert b"".join(spool.chunks(start=start, end=end)) == content[start:end]
        assert b"".join(spool.chunks(7, start=start)) == content[start:]
        assert spool.head(end) == content[:end]
    finally:
        spool.close()


# --- body filters ---------------------------------------------------------------------------

MESSAGE = b"Subject: s\r\nTo: a@example.org\r\n\r\nline one\r\nline two\r\n"


def test_a_line_filter_rewrites_the_body_only() -> None:
    txn = make_transaction(make_connection(), message=MESSAGE)
    txn.add_body_filter(line_filter(bytes.upper))
    assert stored(txn) == b"Subject: s\r\nTo: a@example.org\r\n\r\nLINE ONE\r\nLINE TWO\r\n"
    assert b"".join(txn.body_chunks()) == b"LINE ONE\r\nLINE TWO\r\n"
    assert b"".join(txn.received_chunks()) == MESSAGE


def test_filters_run_in_order_once_and_again_when_one_is_added() -> None:
    calls: list[str] = []

    def tagged(tag: bytes) -> BodyFilter:
        def run(chunks: Iterator[bytes]) -> Iterable[bytes]:
            calls.append(tag.decode())
            return itertools.chain(chunks, [tag])

        return run

    txn = make_transaction(make_connection(), message=MESSAGE)
    txn.add_body_filter(tagged(b"[a]"))
    txn.add_body_filter(tagged(b"[b]"))
    assert stored(txn).endswith(b"line two\r\n[a][b]")
    assert txn.message_size() == len(MESSAGE) + 6
    assert calls == ["[a]", "[b]"], "rendered once for size and content"
    txn.headers.add("X-After", "a header edit does not run the filters again")
    assert b"X-After" in stored(txn)
    assert calls == ["[a]", "[b]"]
    txn.add_body_filter(tagged(b"[c]"))
    assert stored(txn).endswith(b"[a][b][c]")
    assert calls == ["[a]", "[b]", "[a]", "[b]", "[c]"]


def test_a_filter_that_yields_no_bytes_fails_when_the_message_is_stored() -> None:
    txn = make_transaction(make_connection(), message=MESSAGE)
    txn.add_body_filter(lambda chunks: ["text"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="yielded str"):
        txn.message_size()


def test_a_body_made_by_a_filter_gets_a_blank_line_before_it() -> None:
    txn = make_transaction(make_connection(), message=b"Subject: only a header")
    txn.add_body_filter(lambda chunks: [*chunks, b"added\r\n"])
    assert stored(txn) == b"Subject: only a header\r\n\r\nadded\r\n"


_ENDINGS = st.sampled_from([b"\r\n", b"\n", b"\r"])
_NAMES = st.text("abcXYZ-_09", max_size=10).map(str.encode)
_TEXT = st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_NAMES, _ENDINGS)), st.lists(st.tuples(_TEXT, _ENDINGS)), _ENDINGS)
def test_an_identity_filter_stores_the_received_octets(
    header: list[tuple[bytes, bytes]], body: list[tuple[bytes, bytes]], blank: bytes
) -> None:
    head = b"".join(b"X-F" + name + b": v" + end for name, end in header)
    rest = b"".join(text + end for text, end in body)
    assume(not head.endswith(b"\r") or not blank.startswith(b"\n"))
    assume(blank != b"\r" or not rest.startswith(b"\n"))
    raw = head + blank + rest
    txn = make_transaction(make_connection(), message=raw)
    txn.add_body_filter(lambda chunks: chunks)
    assert stored(txn) == raw
    assert b"".join(txn.body_chunks()) == raw[len(head) + len(blank) :]


async def test_apply_body_filters_renders_a_large_body_in_a_worker_thread() -> None:
    txn = make_transaction(make_connection(), message=b"Subject: big\r\n\r\n")
    for _ in range(1100):
        txn.body.write(b"a" * 1023 + b"\n")
    threads: list[bool] = []
    loop_thread = threading.get_ident()

    def upper(chunks: Iterator[bytes]) -> Iterator[bytes]:
        threads.append(threading.get_ident() == loop_thread)
        for chunk in chunks:
            yield chunk.upper()

    assert not txn.body.in_memory
    txn.add_body_filter(upper)
    try:
        await txn.apply_body_filters()
        assert threads == [False], "run outside the event loop's thread"
        assert txn.message_size() == txn.data_size
        assert threads == [False], "not run again"
        assert stored(txn).endswith(b"A" * 1023 + b"\n")
    finally:
        txn.discard()


# --- banners --------------------------------------------------------------------------------

BANNER = "-- \nScanned by tsmtp"


def plain(
    text: str = "Hello.\n", *, cte: str | None = None, charset: str = "utf-8"
) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = "test"
    message.set_content(text, charset=charset, cte=cte)
    return message


def test_a_banner_ends_a_plain_message() -> None:
    txn = make_transaction(make_connection(), message=smtp_bytes(plain()))
    assert txn.add_banner(BANNER) == 1
    assert parse(stored(txn)).get_content() == "Hello.\r\n-- \r\nScanned by tsmtp\r\n"


def test_a_banner_goes_into_each_text_alternative_and_never_into_an_attachment() -> None:
    message = plain("Hallo Welt, äöü\n")
    message.add_alternative("<html><body><p>Hallo</p></body></html>\n", subtype="html")
    message.add_attachment(b"%PDF" + bytes(range(256)) * 20, "application", "pdf", filename="a.pdf")
    message.add_attachment("an attached text\n", filename="notes.txt")
    txn = make_transaction(make_connection(), message=smtp_bytes(message))
    assert txn.add_banner(BANNER, html="<p>Scanned by tsmtp</p>") == 2
    text, html, pdf, notes = leaves(parse(stored(txn)))
    assert text.get_content().endswith("äöü\r\n-- \r\nScanned by tsmtp")
    assert html.get_content().endswith("</html>\r\n<p>Scanned by tsmtp</p>")
    assert pdf.get_content() == b"%PDF" + bytes(range(256)) * 20
    assert notes.get_content() == "an attached text\r\n"


def test_a_quoted_printable_part_gets_a_quoted_printable_banner() -> None:
    message = plain("Grüße, and a soft break at the end of a long line " + "x" * 80 + "\n")
    message.replace_header("Content-Transfer-Encoding", "quoted-printable")
    message.set_content(message.get_content(), cte="quoted-printable")
    raw = smtp_bytes(message)
    assert b"=\r\n" in raw
    txn = make_transaction(make_connection(), message=raw)
    assert txn.add_banner("Geprüft = gut") == 1
    content = parse(stored(txn)).get_content()
    assert content.endswith("x" * 80 + "\r\nGeprüft = gut\r\n")
    assert b"Gepr=C3=BCft =3D gut" in stored(txn)


@pytest.mark.parametrize(
    ("part", "content"),
    [
        (b"\r\ntext\r\n", "text\r\nbanner"),
        (b"\r\ntext\r\n\r\n", "text\r\nbanner"),
        (b"\r\n\r\n", "banner"),
        (b"Content-Transfer-Encoding: quoted-printable\r\n\r\nfoo=\r\n", "foo\r\nbanner"),
        (b"Content-Transfer-Encoding: quoted-printable\r\n\r\nfoo=\r\n\r\n", "foo\r\nbanner"),
        (b"Content-Transfer-Encoding: quoted-printable\r\n\r\na=3D\r\n", "a=\r\nbanner"),
    ],
)
def test_a_banner_starts_on_a_line_of_its_own(part: bytes, content: str) -> None:
    raw = TOP_MIXED + b"--b\r\n" + part + b"--b--\r\n"
    txn = make_transaction(make_connection(), message=raw)
    assert txn.add_banner("banner") == 1
    (text,) = leaves(parse(stored(txn)))
    assert text.get_content() == content


TOP_MIXED = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'


@pytest.mark.parametrize(
    "kind",
    ["signed", "base64 text", "ascii charset", "attached message", "not text"],
)
def test_a_banner_leaves_alone_what_it_cannot_change_safely(kind: str) -> None:
    if kind == "signed":
        message = plain()
        message.make_mixed()
        message.replace_header("Content-Type", message["Content-Type"].replace("mixed", "signed"))
    elif kind == "base64 text":
        message = plain("Hello.\n", cte="base64")
    elif kind == "ascii charset":
        message = plain("Hello.\n", charset="us-ascii")
    elif kind == "attached message":
        message = EmailMessage()
        message["Subject"] = "fwd"
        message.set_content(plain(), disposition="inline")
        message.make_mixed()
    else:
        message = EmailMessage()
        message.set_content(b"\x00\x01", "application", "octet-stream")
    raw = smtp_bytes(message)
    txn = make_transaction(make_connection(), message=raw)
    assert txn.add_banner("Geprüft" if kind == "ascii charset" else BANNER) == 0
    assert stored(txn) == raw


# --- parts() --------------------------------------------------------------------------------


def test_parts_gives_every_entity_with_its_name_type_and_decoded_body() -> None:
    inner = plain("inner text\n")
    inner.add_attachment(b"inner bytes", "application", "octet-stream", filename="inner.bin")
    message = plain("outer text\n")
    message.add_attachment(bytes(range(256)), "application", "pdf", filename="résumé.pdf")
    message.add_attachment(inner)
    message.add_attachment("q=p text ünïcode\n", cte="quoted-printable", filename="n.txt")
    txn = make_transaction(make_connection(), message=smtp_bytes(message))

    parts = txn.parts()
    summary = [(p.depth, p.content_type, p.filename, p.is_multipart) for p in parts]
    assert summary == [
        (0, "multipart/mixed", None, True),
        (1, "text/plain", None, False),
        (1, "application/pdf", "résumé.pdf", False),
        (1, "message/rfc822", None, False),
        (2, "multipart/mixed", None, True),
        (3, "text/plain", None, False),
        (3, "application/octet-stream", "inner.bin", False),
        (1, "text/plain", "n.txt", False),
    ]
    assert parts[2].decoded() == bytes(range(256))
    assert parts[2].transfer_encoding == "base64"
    assert parts[2].disposition == "attachment"
    assert parts[6].decoded() == b"inner bytes"
    assert parts[7].text() == "q=p text ünïcode\r\n"
    assert parts[1].text() == "outer text\r\n"
    assert b"".join(parts[0].raw_chunks()) == b"".join(txn.body_chunks())

    python = [p.get_content_type() for p in parse(stored(txn)).walk()]
    assert [p.content_type for p in parts] == python


def test_parts_of_a_digest_default_to_messages() -> None:
    raw = (
        b'Content-Type: multipart/digest; boundary="d"\r\n\r\n'
        b"--d\r\n\r\nSubject: first\r\n\r\none\r\n"
        b"--d\r\nContent-Type: text/plain\r\n\r\ntwo\r\n--d--\r\n"
    )
    txn = make_transaction(make_connection(), message=raw)
    parts = txn.parts()
    assert [(p.depth, p.content_type) for p in parts] == [
        (0, "multipart/digest"),
        (1, "message/rfc822"),
        (2, "text/plain"),
        (1, "text/plain"),
    ]
    assert parts[1].headers.get_content_type() == "message/rfc822"
    assert parts[2].decoded() == b"one"
    assert parts[3].decoded() == b"two"


def test_parts_survive_a_broken_structure() -> None:
    raw = (
        b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        b'--outer\r\nContent-Type: multipart/alternative; boundary="inner"\r\n\r\n'
        b"--inner\r\nContent-Type: text/plain\r\n\r\nnever closed\r\n"
        b"--outer\r\nContent-Type: text/html\r\n"
    )
    parts = make_transaction(make_connection(), message=raw).parts()
    assert [p.content_type for p in parts] == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    assert parts[2].decoded() == b"never closed"
    assert parts[3].size == 0


def test_reading_a_part_after_the_body_changed_is_refused() -> None:
    txn = make_transaction(make_connection(), message=smtp_bytes(plain()))
    txn.add_body_filter(line_filter(bytes.upper))
    (part,) = txn.parts()
    assert part.decoded() == b"HELLO.\r\n"
    txn.add_body_filter(line_filter(bytes.lower))
    with pytest.raises(RuntimeError, match="walk it again"):
        part.decoded()


def test_too_many_parts_or_too_deep_a_nesting_is_refused() -> None:
    many = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + b"--b\r\n\r\nx\r\n" * 10_001
    with pytest.raises(MessageTooComplex, match="10000"):
        make_transaction(make_connection(), message=many).parts()
    deep = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(60)
    )
    with pytest.raises(MessageTooComplex, match="deeper"):
        make_transaction(make_connection(), message=deep).parts()


# --- message() and its limit ------------------------------------------------------------------

ATTACHMENT_SIZE = 18 * 1024 * 1024  # 24.6 MB once base64-encoded


def big_message(txn: Transaction) -> str:
    """Write a 25 MB message with one attachment into ``txn`` chunk by chunk; its SHA-256."""
    txn.body.write(
        b"Subject: big\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n"
        b"--b\r\nContent-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="data.zip"\r\n\r\n'
    )
    digest = hashlib.sha256()
    block = bytes(range(256)) * 228  # 58368 octets, a multiple of 57: whole base64 lines
    for _ in range(ATTACHMENT_SIZE // len(block)):
        digest.update(block)
        txn.body.write(base64.encodebytes(block).replace(b"\n", b"\r\n"))
    txn.body.write(b"--b--\r\n")
    return digest.hexdigest()


def test_a_25_mb_message_is_not_parsed_whole_but_can_be_walked() -> None:
    txn = make_transaction(make_connection())
    digest = big_message(txn)
    try:
        assert txn.message_size() > 24_000_000
        assert not txn.body.in_memory
        tracemalloc.start()
        try:
            with pytest.raises(MessageTooLarge) as refused:
                txn.message()
            assert tracemalloc.get_traced_memory()[1] < 1_000_000, "nothing was parsed"
            assert (refused.value.size, refused.value.limit) == (txn.message_size(), 10 << 20)

            tracemalloc.reset_peak()
            parts = txn.parts()
            names = [(p.content_type, p.filename) for p in parts]
            assert names == [
                ("multipart/mixed", None),
                ("text/plain", None),
                ("application/zip", "data.zip"),
            ]
            assert tracemalloc.get_traced_memory()[1] < 4_000_000, "walked as a stream"
        finally:
            tracemalloc.stop()
        hashed = hashlib.sha256()
        for chunk in parts[2].decoded_chunks():
            assert len(chunk) <= 1 << 16
            hashed.update(chunk)
        assert hashed.hexdigest() == digest
    finally:
        txn.discard()


def test_message_parses_what_will_be_stored() -> None:
    txn = make_transaction(make_connection(), message=smtp_bytes(plain()))
    txn.headers.remove("Subject")
    txn.headers.add("Subject", "Grüße")
    assert txn.add_banner("banner") == 1
    parsed = txn.message()
    assert parsed["Subject"] == "Grüße"
    assert parsed.get_content() == "Hello.\r\nbanner\r\n"
    txn.max_parse_size = 10
    with pytest.raises(MessageTooLarge):
        txn.message()


# --- the walk does not depend on how the body is cut ----------------------------------------

_MIME_LINES = st.sampled_from(
    [
        b"--b",
        b"--b--",
        b"--b  ",
        b"--bb",
        b"--c",
        b"--c--",
        b"-",
        b"",
        b"text",
        b"=",
        b"Content-Type: multipart/mixed; boundary=c",
        b"Content-Type: text/plain",
        b"Content-Type: message/rfc822",
        b"Content-Transfer-Encoding: quoted-printable",
        b" folded",
    ]
)
_MIME_BODIES = st.lists(
    st.tuples(_MIME_LINES, st.sampled_from([b"\r\n", b"\n", b"\r"])), max_size=30
)
TOP = b'Content-Type: multipart/alternative; boundary="b"\r\n'


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, position = [], 0
    for size in sizes:
        chunks.append(data[position : position + size])
        position += size
    return [*chunks, data[position:]]


def reference_walk(body: bytes) -> list[tuple[int, str, int, int]]:
    """The walk fed every line one by one, the plain way the bulk scan must agree with."""
    walker = _Walker(parse_fields(TOP))
    for piece in lines([body]):
        walker.feed(piece)
    walker.finish()
    return [(n.depth, n.content_type, n.body_start, n.end) for n in walker.nodes]


@settings(max_examples=400, deadline=None)
@given(_MIME_BODIES, st.lists(st.integers(0, 12), max_size=8))
def test_the_walk_and_the_banner_do_not_depend_on_the_chunking(
    body_lines: list[tuple[bytes, bytes]], sizes: list[int]
) -> None:
    body = b"".join(line + ending for line, ending in body_lines)
    txn = make_transaction(make_connection(), message=TOP + b"\r\n" + body)
    parts = txn.parts()
    assert [(p.depth, p.content_type) for p in parts] == [
        (depth, ctype) for depth, ctype, _, _ in reference_walk(body)
    ]
    for part, (_, _, start, end) in zip(parts, reference_walk(body), strict=True):
        assert b"".join(part.raw_chunks()) == body[start:end]

    banner = banner_filter(parse_fields(TOP), Banner("banner", "<p>banner</p>"))
    whole = b"".join(banner(iter([body])))
    assert b"".join(banner(iter(cut(body, sizes)))) == whole
    assert whole.count(b"banner") == txn.add_banner("banner", html="<p>banner</p>")
