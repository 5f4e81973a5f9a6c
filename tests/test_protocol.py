"""The sans-IO core, driven with byte strings only."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsmtp.protocol import (
    LINE_TOO_LONG,
    Address,
    DataReader,
    LineBuffer,
    ProtocolError,
    Reply,
    parse_hello,
    parse_mail,
    parse_rcpt,
    split_command,
)

# --- lines ---------------------------------------------------------------------------------------


def test_lines_split_on_crlf_and_keep_partial() -> None:
    buf = LineBuffer()
    buf.feed(b"EHLO a\r\nMAIL FROM:<>\r\nRCPT")
    assert buf.next_line() == b"EHLO a"
    assert buf.next_line() == b"MAIL FROM:<>"
    assert buf.next_line() is None
    buf.feed(b" TO:<a@b>\r\n")
    assert buf.next_line() == b"RCPT TO:<a@b>"
    assert buf.next_line() is None


def test_bare_lf_ends_a_command_line() -> None:
    buf = LineBuffer()
    buf.feed(b"NOOP\nQUIT\r\n")
    assert buf.next_line() == b"NOOP"
    assert buf.next_line() == b"QUIT"


def test_line_of_exactly_512_octets_is_accepted_513_is_not() -> None:
    buf = LineBuffer(512)
    ok = b"NOOP " + b"x" * (512 - 7)
    buf.feed(ok + b"\r\n")
    assert buf.next_line() == ok
    buf.feed(ok + b"y\r\n")
    assert buf.next_line() is LINE_TOO_LONG


def test_endless_line_never_grows_the_buffer_and_is_reported_once() -> None:
    buf = LineBuffer(512)
    for _ in range(100):
        buf.feed(b"A" * 1000)
        assert buf.next_line() is None
        assert len(buf) <= 1000
    buf.feed(b"tail\r\nNOOP\r\n")
    assert buf.next_line() is LINE_TOO_LONG
    assert buf.next_line() == b"NOOP"


# --- commands ------------------------------------------------------------------------------------


def test_split_command_uppercases_verb() -> None:
    cmd = split_command(b"mail FROM:<a@b.c>  SIZE=10")
    assert (cmd.verb, cmd.argument) == ("MAIL", "FROM:<a@b.c>  SIZE=10")


@pytest.mark.parametrize("line", [b"NOOP\x00", b"HELO \xff\xfe", b"NO\rOP"])
def test_split_command_refuses_nul_bad_utf8_and_controls(line: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        split_command(line)
    assert info.value.code == 500


@pytest.mark.parametrize(
    ("argument", "local", "domain"),
    [
        ("FROM:<user@example.com>", "user", "example.com"),
        ("from:<User.Name+tag@Sub.Example.COM>", "User.Name+tag", "Sub.Example.COM"),
        ('FROM:<"john doe"@example.com>', '"john doe"', "example.com"),
        ('FROM:<"a>b"@example.com>', '"a>b"', "example.com"),
        ("FROM:<@relay1,@relay2:user@example.com>", "user", "example.com"),
        ("FROM:<user@[192.0.2.1]>", "user", "[192.0.2.1]"),
        ("FROM:<user@[IPv6:2001:db8::1]>", "user", "[IPv6:2001:db8::1]"),
        ("FROM: <user@example.com>", "user", "example.com"),
        ("FROM:user@example.com", "user", "example.com"),
        ("FROM:<>", "", ""),
    ],
)
def test_mail_paths(argument: str, local: str, domain: str) -> None:
    mail = parse_mail(argument)
    assert (mail.sender.local_part, mail.sender.domain) == (local, domain)


@pytest.mark.parametrize(
    "argument",
    [
        "FROM:<user@>",
        "FROM:<@example.com>",
        "FROM:<user@exa mple.com>",
        "FROM:<user@[300.1.1.1]>",
        "FROM:<user@[IPv6:zz::1]>",
        "FROM:<a..b@example.com>",
        "FROM:<.a@example.com>",
        "FROM:<user@example.com",
        "FROM:<user@example.com>junk",
        "FROM:<" + "a" * 65 + "@example.com>",
        "TO:<a@b.c>",
        "FROM<a@b.c>",
    ],
)
def test_bad_mail_paths_are_501(argument: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_mail(argument)
    assert info.value.code == 501


def test_postmaster_without_domain_only_in_rcpt() -> None:
    assert parse_rcpt("TO:<Postmaster>").recipient == Address("Postmaster", "")
    with pytest.raises(ProtocolError):
        parse_mail("FROM:<Postmaster>")
    with pytest.raises(ProtocolError):
        parse_rcpt("TO:<>")


def test_utf8_address_parses_and_is_flagged_non_ascii() -> None:
    rcpt = parse_rcpt("TO:<用户@例子.广告>")
    assert rcpt.recipient.domain == "例子.广告"
    assert not rcpt.recipient.is_ascii


def test_mail_parameters_are_typed() -> None:
    mail = parse_mail(
        "FROM:<a@b.c> size=1000 BODY=8bitmime SMTPUTF8 RET=HDRS ENVID=abc+2Bdef AUTH=<>"
    )
    p = mail.params
    assert (p.size, p.body, p.smtputf8, p.ret, p.envid, p.auth) == (
        1000,
        "8BITMIME",
        True,
        "HDRS",
        "abc+def",
        "<>",
    )


def test_unknown_and_disabled_parameters_land_in_extra() -> None:
    mail = parse_mail("FROM:<a@b.c> XFOO=1 SIZE=5", allowed=frozenset())
    assert dict(mail.params.extra) == {"XFOO": "1", "SIZE": "5"}
    assert mail.params.size is None


@pytest.mark.parametrize(
    "params", ["SIZE=abc", "SIZE", "BODY=9BIT", "SMTPUTF8=yes", "SIZE=1 SIZE=2", "=x", "RET=ALL"]
)
def test_bad_mail_parameters_are_501(params: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_mail(f"FROM:<a@b.c> {params}")
    assert info.value.code == 501


def test_rcpt_dsn_parameters() -> None:
    rcpt = parse_rcpt("TO:<a@b.c> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+40b.c")
    assert rcpt.params.notify == ("SUCCESS", "DELAY")
    assert rcpt.params.orcpt == "rfc822;a@b.c"
    with pytest.raises(ProtocolError):
        parse_rcpt("TO:<a@b.c> NOTIFY=NEVER,SUCCESS")


def test_hello_needs_a_name() -> None:
    assert parse_hello("mx.example.com extra", "EHLO") == "mx.example.com"
    with pytest.raises(ProtocolError):
        parse_hello("", "HELO")


@given(st.binary(max_size=600))
@settings(max_examples=500)
def test_command_parsers_raise_only_protocol_errors(line: bytes) -> None:
    try:
        cmd = split_command(line)
        parse_mail(cmd.argument)
    except ProtocolError:
        pass
    with contextlib.suppress(ProtocolError):
        parse_rcpt(line.decode("utf-8", "replace"))


@given(st.text(max_size=300))
def test_path_parsers_raise_only_protocol_errors(text: str) -> None:
    for parse in (parse_mail, parse_rcpt):
        try:
            parse("FROM:" + text)
            parse("TO:" + text)
        except ProtocolError:
            pass


# --- replies -------------------------------------------------------------------------------------


def test_reply_multiline_and_enhanced() -> None:
    reply = Reply.of(250, ["first", "second", "third"], "2.0.0")
    assert reply.to_bytes() == b"250-2.0.0 first\r\n250-2.0.0 second\r\n250 2.0.0 third\r\n"


def test_reply_keeps_a_plugins_own_enhanced_code_and_strips_crlf() -> None:
    reply = Reply.of(550, "5.1.1 no such user\r\nMAIL FROM:<x>", "5.7.1")
    assert reply.to_bytes() == b"550 5.1.1 no such user  MAIL FROM:<x>\r\n"


# --- DATA ----------------------------------------------------------------------------------------


def read_all(chunks: list[bytes], **kwargs: object) -> tuple[bytes, DataReader]:
    reader = DataReader(10_000_000, **kwargs)  # type: ignore[arg-type]
    out = bytearray()
    for chunk in chunks:
        out += reader.feed(chunk)
        if reader.done:
            break
    return bytes(out), reader


def test_data_ends_at_crlf_dot_crlf_and_unstuffs() -> None:
    body, reader = read_all([b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n"])
    assert reader.done
    assert body == b"Subject: x\r\n\r\n.leading dot\r\n"
    assert reader.leftover == b"QUIT\r\n"


def test_empty_message() -> None:
    body, reader = read_all([b".\r\n"])
    assert reader.done and body == b""


def test_first_line_dot_stuffed() -> None:
    body, _reader = read_all([b"..x\r\n.\r\n"])
    assert body == b".x\r\n"


SMUGGLING = [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\r\n.\n"]


@pytest.mark.parametrize("marker", SMUGGLING)
def test_smuggling_markers_never_end_the_message(marker: bytes) -> None:
    data = b"Subject: one\r\n\r\nbody" + marker + b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\nDATA\r\n"
    _body, reader = read_all([data])
    assert not reader.done
    assert reader.bare_endings
    rest, reader2 = b"more\r\n.\r\n", reader
    reader2.feed(rest)
    assert reader2.done and reader2.leftover == b""


@pytest.mark.parametrize("marker", SMUGGLING)
def test_normalize_rewrites_bare_endings_without_ending_early(marker: bytes) -> None:
    data = b"a" + marker + b"b\r\n.\r\n"
    body, reader = read_all([data], bare_endings="normalize")
    assert reader.done and reader.leftover == b""
    assert b"\n" not in body.replace(b"\r\n", b"")
    assert b"\r" not in body.replace(b"\r\n", b"")
    assert body.startswith(b"a\r\n") and body.endswith(b"b\r\n")


def test_size_limit_keeps_reading_to_the_end() -> None:
    reader = DataReader(100)
    out = reader.feed(b"x" * 98 + b"\r\n" + b"y" * 500 + b"\r\n")
    out += reader.feed(b".\r\nNOOP\r\n")
    assert reader.done and reader.too_big
    assert reader.leftover == b"NOOP\r\n"
    assert len(out) <= 100


def test_long_lines_are_flagged() -> None:
    _, ok = read_all([b"a" * 998 + b"\r\n.\r\n"])
    assert not ok.long_line
    _, bad = read_all([b"a" * 999 + b"\r\n.\r\n"])
    assert bad.long_line
    # across chunk boundaries, and longer than the hold limit
    _, huge = read_all([b"b" * 70000, b"c" * 70000, b"\r\n.\r\n"])
    assert huge.long_line and huge.done


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    lines = draw(
        st.lists(
            st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
            max_size=30,
        )
    )
    return b"".join(line + b"\r\n" for line in lines)


def stuff(message: bytes) -> bytes:
    lines = message.split(b"\r\n")
    return b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)


@given(messages(), st.lists(st.integers(min_value=1, max_value=50), max_size=20))
@settings(max_examples=300)
def test_any_split_of_a_stuffed_message_round_trips(message: bytes, cuts: list[int]) -> None:
    wire = stuff(message) + b".\r\nRSET\r\n"
    chunks, pos = [], 0
    for cut in cuts:
        chunks.append(wire[pos : pos + cut])
        pos += cut
    chunks.append(wire[pos:])
    reader = DataReader(10_000_000)
    out = bytearray()
    for chunk in chunks:
        if reader.done:
            reader.leftover += chunk
            continue
        out += reader.feed(chunk)
    assert reader.done
    assert bytes(out) == message
    assert reader.leftover == b"RSET\r\n"
    assert not reader.bare_endings
    assert reader.size == len(message)


@given(
    st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b".\r\n", *SMUGGLING])),
    st.integers(1, 40),
)
@settings(max_examples=500)
def test_data_ends_exactly_at_the_first_crlf_dot_crlf(pieces: list[bytes], step: int) -> None:
    """Whatever mix of dots, CRs and LFs arrives, in whatever chunks, DATA ends at the first
    CRLF.CRLF of the raw stream (counting the CRLF that ended the DATA command) and nowhere else."""
    wire = b"".join(pieces) + b"\r\n.\r\nNEXT\r\n"
    expected_end = (b"\r\n" + wire).find(b"\r\n.\r\n") + 5 - 2
    reader = DataReader(10_000_000)
    pos = 0
    while not reader.done:
        reader.feed(wire[pos : pos + step])
        pos += step
    consumed = min(pos, len(wire)) - len(reader.leftover)
    assert consumed == expected_end
    assert reader.leftover == wire[expected_end : min(pos, len(wire))]


def test_empty_auth_challenge_keeps_its_space() -> None:
    assert Reply.of(334, "").to_bytes() == b"334 \r\n"
    assert Reply.of(250, "", "2.0.0").to_bytes() == b"250 2.0.0\r\n"
