"""The sans-IO core, driven with byte strings only."""

from __future__ import annotations

import contextlib
import ipaddress
from collections import Counter
from collections.abc import Callable
from types import ModuleType
from typing import Any

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
    addresses,
    commands,
    parse_bdat,
    parse_hello,
    parse_mail,
    parse_number,
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


def test_bdat_argument() -> None:
    assert parse_bdat("0") == (0, False)
    assert parse_bdat("1024 LAST") == (1024, True)
    assert parse_bdat("007 last") == (7, True)
    assert parse_bdat("9" * 18) == (10**18 - 1, False)


@pytest.mark.parametrize(
    "argument",
    [
        "",
        "ten",
        "-1",
        "+5",
        "1_000",
        " 5",
        "5 ",
        "5  LAST",
        "5 LAST x",
        "5 FIRST",
        "9" * 19,
        "\u00b2",  # SUPERSCRIPT TWO: isdigit() is true, int() refuses it
        "\u0663 LAST",  # ARABIC-INDIC DIGIT THREE: int() reads it as 3
        "\uff13",  # FULLWIDTH DIGIT THREE
        "5 LA\u017fT",  # LONG S upper-cases to S
    ],
)
def test_bad_bdat_arguments_are_501(argument: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_bdat(argument)
    assert (info.value.code, info.value.enhanced) == (501, "5.5.4")


@pytest.mark.parametrize("digits", ["", "\u00b2", "\u0663", "\uff13", "1\u0663", "+1", " 1", "1_0"])
def test_parse_number_takes_ascii_digits_only(digits: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_number(digits, max_digits=5, code=501, enhanced="5.5.4", text="a number")
    assert (info.value.code, info.value.enhanced, info.value.text) == (501, "5.5.4", "a number")
    with pytest.raises(ProtocolError):
        parse_number(digits.encode(), max_digits=5, code=501, enhanced="5.5.4", text="a number")


def test_parse_number_bounds() -> None:
    def parse(digits: str | bytes, maximum: int | None = None, *, zeros: bool = True) -> int:
        return parse_number(
            digits,
            max_digits=5,
            maximum=maximum,
            leading_zeros=zeros,
            code=421,
            enhanced="4.7.0",
            text="bad",
        )

    assert parse("00042") == 42
    assert parse(b"65535", 65535, zeros=False) == 65535
    assert parse("0", zeros=False) == 0
    with pytest.raises(ProtocolError):
        parse("123456")
    with pytest.raises(ProtocolError):
        parse(b"65536", 65535)
    with pytest.raises(ProtocolError):
        parse("025", zeros=False)


@pytest.mark.parametrize("size", ["\u0663\u0663", "\u00b2", "\uff13", "1\u0663", "-1", "9" * 21])
def test_size_parameter_takes_ascii_digits_only(size: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_mail(f"FROM:<a@b.c> SIZE={size}")
    assert (info.value.code, info.value.enhanced) == (501, "5.5.4")
    assert parse_mail("FROM:<a@b.c> SIZE=00033").params.size == 33


@pytest.mark.parametrize("encoded", ["+0D", "+0A", "+00", "+09", "+7F", "+85", "+0D+0AX:+201"])
def test_xtext_decoding_to_a_control_character_is_501(encoded: str) -> None:
    for argument, parse in [
        (f"FROM:<a@b.c> AUTH=a{encoded}b@c.d", parse_mail),
        (f"FROM:<a@b.c> ENVID=id{encoded}", parse_mail),
        (f"TO:<a@b.c> ORCPT=rfc822;a{encoded}b@c.d", parse_rcpt),
    ]:
        with pytest.raises(ProtocolError) as info:
            parse(argument)
        assert (info.value.code, info.value.enhanced) == (501, "5.5.4"), argument
    assert parse_mail("FROM:<a@b.c> AUTH=a+2Bb+3Dc@d.e").params.auth == "a+b=c@d.e"


def test_keywords_are_case_insensitive_in_ascii_only() -> None:
    assert split_command(b"starttls").verb == "STARTTLS"
    assert split_command("\u017ftarttls".encode()).verb != "STARTTLS"  # LONG S
    assert split_command("qu\u0131t".encode()).verb != "QUIT"  # DOTLESS I
    with pytest.raises(ProtocolError):
        parse_mail("FROM:<a@b.c> BODY=8b\u0131tm\u0131me")
    with pytest.raises(ProtocolError):
        parse_mail("FROM:<a@b.c> RET=HDR\u017f")
    with pytest.raises(ProtocolError):
        parse_rcpt("TO:<a@b.c> NOTIFY=\u017fUCCESS")


# Property tests of the path parsers. Each counts the calls that reach the code it names, since
# a generator whose inputs all fail an earlier check (the FROM:/TO: prefix, say) tests nothing.

_ATEXT = list("abcXYZ019!#$%&'*+-/=?^_`{|}~\u00e9\u7528")
_LOCAL_CHARS = list("abcXYZ019.!#$%&'*+-/=?^_`{|}~\"\\ @<>[]:,\u00e9\u7528")
_DOMAIN_CHARS = list("abcXYZ019.-[]:\u00e9\u4f8b ")
_LABELS = st.text(st.sampled_from("abcXYZ019-\u00e9\u4f8b"), min_size=1, max_size=10)
PARAMETERS = [
    "SIZE=10",
    "SIZE=\u0663",
    "SIZE=",
    "BODY=8BITMIME",
    "BODY=7bit",
    "SMTPUTF8",
    "AUTH=<>",
    "AUTH=a+0Db",
    "AUTH=a+2Bb@c",
    "RET=HDRS",
    "ENVID=x+2B",
    "NOTIFY=NEVER",
    "NOTIFY=SUCCESS,DELAY",
    "ORCPT=rfc822;a+40b",
    "ORCPT=;x",
    "XFOO",
    "X-BAR=1",
    "=x",
]


def _literal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return f"[IPv6:{ip}]" if ip.version == 6 else f"[{ip}]"


@st.composite
def path_texts(draw: st.DrawFn) -> str:
    """Text for between the angle brackets: mostly mailbox-shaped, sometimes anything at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.text(max_size=80))
    route = draw(st.sampled_from(["", "", "", "@relay.example:", "@a,@b.c:", "@:"]))
    local = draw(
        st.one_of(
            st.text(st.sampled_from(_ATEXT), min_size=1, max_size=30),
            st.text(st.sampled_from(_LOCAL_CHARS), min_size=1, max_size=70),
            st.text(max_size=12).map(lambda t: f'"{t}"'),
            st.sampled_from(["user", "Postmaster", "first.last", ""]),
        )
    )
    if local in ("Postmaster", "") and draw(st.booleans()):
        return route + local
    domain = draw(
        st.one_of(
            st.lists(_LABELS, min_size=1, max_size=4).map(".".join),
            st.text(st.sampled_from(_DOMAIN_CHARS), max_size=40),
            st.ip_addresses().map(_literal),
            st.sampled_from(["example.com", "[IPv6:zz::1]", "[tag:x]", ""]),
        )
    )
    return route + local + draw(st.sampled_from(["@", "@", "@", "@@"])) + domain


@st.composite
def path_arguments(draw: st.DrawFn) -> str:
    """What follows ``FROM:`` or ``TO:``: a path, usually bracketed, then parameters."""
    path = draw(path_texts())
    if draw(st.integers(0, 9)) > 0:
        path = f"<{path}>"
    params = draw(
        st.one_of(
            st.lists(st.sampled_from(PARAMETERS), max_size=4).map(" ".join),
            st.text(max_size=40),
        )
    )
    return draw(st.sampled_from(["", "", " "])) + path + (" " + params if params else "")


def spy(
    monkeypatch: pytest.MonkeyPatch,
    module: ModuleType,
    name: str,
    kind: Callable[[dict[str, Any]], str],
) -> Counter[str]:
    """Count the calls of ``module.name``, by ``kind(keyword arguments)``."""
    real = getattr(module, name)
    calls: Counter[str] = Counter()

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[kind(kwargs)] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def spy_path_parsers(monkeypatch: pytest.MonkeyPatch) -> tuple[Counter[str], Counter[str]]:
    """Count the calls of ``parse_path`` and, past the bracket split, ``parse_mailbox``."""
    paths = spy(monkeypatch, commands, "parse_path", lambda kw: "MAIL" if kw["reverse"] else "RCPT")
    mailboxes = spy(
        monkeypatch,
        addresses,
        "parse_mailbox",
        lambda kw: "RCPT" if kw["allow_postmaster"] else "MAIL",
    )
    return paths, mailboxes


def test_path_parsers_raise_only_protocol_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    paths, mailboxes = spy_path_parsers(monkeypatch)
    seen: Counter[str] = Counter()

    @given(
        path_arguments(), st.sampled_from([("FROM:", "TO:"), ("from:", "to:"), ("From:", "tO:")])
    )
    @settings(max_examples=500)
    def fuzz(argument: str, prefixes: tuple[str, str]) -> None:
        seen["examples"] += 1
        for verb, parse, prefix in [
            ("MAIL", parse_mail, prefixes[0]),
            ("RCPT", parse_rcpt, prefixes[1]),
        ]:
            try:
                parse(prefix + argument)
            except ProtocolError:
                continue
            seen[verb] += 1

    fuzz()
    examples = seen["examples"]
    assert examples >= 500
    # Every example got past the prefix into both path parsers ...
    assert paths == Counter({"MAIL": examples, "RCPT": examples})
    # ... most past the bracket split into the mailbox syntax, and enough were valid whole
    # commands that the parameter parsers behind the path were reached as well.
    assert min(mailboxes["MAIL"], mailboxes["RCPT"]) >= examples // 2, mailboxes
    assert min(seen["MAIL"], seen["RCPT"]) >= examples // 10, seen


def test_command_lines_raise_only_protocol_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    paths, _ = spy_path_parsers(monkeypatch)
    seen: Counter[str] = Counter()

    @given(
        st.sampled_from([b"MAIL FROM:", b"mail from:", b"RCPT TO:", b"rcpt To:"]),
        st.one_of(st.binary(max_size=300), path_arguments().map(str.encode)),
    )
    @settings(max_examples=500)
    def fuzz(verb: bytes, rest: bytes) -> None:
        seen["examples"] += 1
        try:
            command = split_command(verb + rest)
        except ProtocolError:
            return
        seen[command.verb] += 1
        parse = parse_mail if command.verb == "MAIL" else parse_rcpt
        with contextlib.suppress(ProtocolError):
            parse(command.argument)

    fuzz()
    assert seen["examples"] >= 500
    # Every line split_command let through reached the path parser of its verb.
    assert paths == Counter({"MAIL": seen["MAIL"], "RCPT": seen["RCPT"]})
    assert min(seen["MAIL"], seen["RCPT"]) >= seen["examples"] // 8, seen


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


def test_enhanced_code_in_a_plugins_text_is_ascii_digits_only() -> None:
    own = Reply.of(550, "5.1.1 no such user", "5.7.1")
    assert own.to_bytes() == b"550 5.1.1 no such user\r\n"
    arabic = Reply.of(550, "5.\u0661.1 no such user", "5.7.1")
    assert arabic.to_bytes() == "550 5.7.1 5.\u0661.1 no such user\r\n".encode()


def test_empty_auth_challenge_keeps_its_space() -> None:
    assert Reply.of(334, "").to_bytes() == b"334 \r\n"
    assert Reply.of(250, "", "2.0.0").to_bytes() == b"250 2.0.0\r\n"
