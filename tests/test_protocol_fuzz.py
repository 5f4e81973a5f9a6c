"""Whatever the client sends, the protocol core raises nothing but its own ProtocolError.

Each parser is fed both noise and inputs shaped to get past its first checks (a known verb, a
path in brackets, parameters, Unicode digits where numbers go), and each property counts how
many examples reached the deeper code, so a generator that only ever trips the first check
fails the test instead of passing it vacuously.
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from tsmtp.protocol import (
    LINE_TOO_LONG,
    MAIL_PARAMETERS,
    RCPT_PARAMETERS,
    BareEndings,
    Command,
    DataReader,
    LineBuffer,
    ProtocolError,
    ProxyHeaderReader,
    ProxyInfo,
    Reply,
    parse_bdat,
    parse_hello,
    parse_mail,
    parse_number,
    parse_rcpt,
    split_command,
)
from tsmtp.protocol.proxy import V1_SIGNATURE, V2_SIGNATURE
from tsmtp.protocol.sasl import decode_response, decode_text, parse_plain

from .test_protocol import PARAMETERS, path_arguments

_ENHANCED = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}\Z")


def check_error(error: ProtocolError, *, codes: range = range(500, 600)) -> None:
    """A ProtocolError must carry a reply the session can send as it is."""
    assert error.code in codes, error
    assert _ENHANCED.match(error.enhanced) is not None and error.enhanced[0] == str(error.code)[0]
    wire = Reply.of(error.code, error.text, error.enhanced).to_bytes()
    assert wire.endswith(b"\r\n") and wire.count(b"\n") == 1, wire


T = TypeVar("T")


def outcome(
    parse: Callable[[], T], seen: Counter[str], *, codes: range = range(500, 600)
) -> T | ProtocolError:
    """Run ``parse``; count and return its result, or count, check and return its error."""
    try:
        result = parse()
    except ProtocolError as error:
        check_error(error, codes=codes)
        seen["refused"] += 1
        return error
    seen["accepted"] += 1
    return result


#: Digits that are not RFC 5234 DIGITs, though ``str.isdigit()`` or ``int()`` take them.
unicode_digits = st.characters(categories=["Nd", "No", "Nl"]).filter(lambda c: not c.isascii())
number_texts = st.one_of(
    st.integers(0, 10**20).map(str),
    st.text(
        st.one_of(st.sampled_from("0123456789"), unicode_digits, st.sampled_from(" +-_x")),
        max_size=25,
    ),
)

VERBS = ["MAIL", "RCPT", "BDAT", "HELO", "EHLO"]

#: Paths of every kind, and common ones with known parameters, so that many commands are whole.
envelope_arguments = st.one_of(
    path_arguments(),
    st.tuples(
        st.sampled_from(["<a@b.example>", "<>", " <user@[192.0.2.1]>", "<Postmaster>"]),
        st.lists(st.sampled_from(PARAMETERS), max_size=3),
    ).map(lambda pair: " ".join([pair[0], *pair[1]])),
)


@st.composite
def command_lines(draw: st.DrawFn) -> bytes:
    """A command line: noise, or a verb with an argument shaped for it (or for another verb)."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=520))
    verb = draw(st.sampled_from(VERBS))
    if verb == "MAIL":
        argument = "FROM:" + draw(envelope_arguments)
    elif verb == "RCPT":
        argument = "TO:" + draw(envelope_arguments)
    elif verb == "BDAT":
        argument = draw(number_texts) + draw(st.sampled_from(["", " LAST", " last", " LA\u017fT"]))
    else:
        argument = draw(
            st.one_of(
                st.sampled_from(["", "  "]),
                st.sampled_from(["mx.example", "[192.0.2.1]", "\u4f8b.example"]),
                st.text(max_size=60),
            )
        )
    if draw(st.integers(0, 9)) == 0:
        argument = draw(st.text(max_size=80))
    if draw(st.booleans()):
        verb = verb.lower()
    return f"{verb} {argument}".encode()


def parse_command(command: Command, mail_params: frozenset[str]) -> object:
    """Call the parser of the command's verb as the session does (None for other verbs)."""
    verb, argument = command.verb, command.argument
    if verb == "MAIL":
        return parse_mail(argument, mail_params)
    if verb == "RCPT":
        return parse_rcpt(argument, RCPT_PARAMETERS)
    if verb == "BDAT":
        return parse_bdat(argument)
    if verb in ("HELO", "EHLO"):
        return parse_hello(argument, verb)
    return None


def test_commands_raise_only_protocol_errors() -> None:
    """split_command and the parser of each verb; every parser is reached, and both accepts
    and refuses."""
    by_verb: dict[str, Counter[str]] = {}

    @given(command_lines(), st.sampled_from([MAIL_PARAMETERS, frozenset()]))
    @settings(max_examples=500)
    def fuzz(line: bytes, mail_params: frozenset[str]) -> None:
        command = outcome(partial(split_command, line), by_verb.setdefault("", Counter()))
        if isinstance(command, Command):
            seen = by_verb.setdefault(command.verb, Counter())
            outcome(partial(parse_command, command, mail_params), seen)

    fuzz()
    for verb in ("", *VERBS):
        seen = by_verb.get(verb, Counter())
        assert min(seen["accepted"], seen["refused"]) >= 5, (verb or "split_command", seen)


def test_bdat_size_is_ascii_digits_or_a_501() -> None:
    seen: Counter[str] = Counter()

    @given(number_texts, st.sampled_from(["", " LAST", " last", " LAST ", " LA\u017fT", "  LAST"]))
    @settings(max_examples=300)
    def fuzz(size: str, marker: str) -> None:
        result = outcome(partial(parse_bdat, size + marker), seen)
        if isinstance(result, ProtocolError):
            assert (result.code, result.enhanced) == (501, "5.5.4")
        else:
            assert size.isascii() and size.isdigit() and len(size) <= 18
            assert result == (int(size), marker in (" LAST", " last"))

    fuzz()
    assert min(seen["accepted"], seen["refused"]) >= 15, seen


@given(st.one_of(number_texts, st.binary(max_size=25)), st.integers(1, 25), st.booleans())
@settings(max_examples=300)
def test_parse_number_accepts_exactly_ascii_digits(
    digits: str | bytes, max_digits: int, leading_zeros: bool
) -> None:
    text = digits.decode("latin-1") if isinstance(digits, bytes) else digits
    expected_ok = (
        text != ""
        and all(c in "0123456789" for c in text)
        and len(text) <= max_digits
        and (leading_zeros or text == "0" or not text.startswith("0"))
    )
    try:
        value = parse_number(
            digits,
            max_digits=max_digits,
            leading_zeros=leading_zeros,
            code=501,
            enhanced="5.5.4",
            text="number",
        )
    except ProtocolError as error:
        assert not expected_ok
        assert (error.code, error.enhanced, error.text) == (501, "5.5.4", "number")
    else:
        assert expected_ok and value == int(text)


_XCHARS = st.sampled_from(list("abcXYZ019@<>.-"))
#: xtext: clean (valid characters, escapes of printable octets) or noisy (escapes of every
#: octet, broken escapes, characters outside xtext).
xtexts = st.one_of(
    st.lists(
        st.one_of(_XCHARS, st.integers(0x21, 0x7E).map(lambda octet: f"+{octet:02X}")),
        max_size=8,
    ).map("".join),
    st.lists(
        st.one_of(
            _XCHARS,
            st.integers(0, 255).map(lambda octet: f"+{octet:02X}"),
            st.sampled_from(["+", "=", "+0", "+zz", "+0d", "\u00e9"]),
        ),
        max_size=8,
    ).map("".join),
)

_PARAM_VALUES = st.one_of(
    number_texts.map(lambda n: f"SIZE={n}"),
    xtexts.map(lambda x: f"AUTH={x}"),
    xtexts.map(lambda x: f"ENVID={x}"),
    xtexts.map(lambda x: f"ORCPT=rfc822;{x}"),
    st.sampled_from(PARAMETERS),
    st.text(max_size=20),
)
parameter_lists = st.lists(
    _PARAM_VALUES, max_size=4, unique_by=lambda param: param.partition("=")[0].upper()
)


_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def test_mail_parameters_are_typed_and_clean_or_refused() -> None:
    seen: Counter[str] = Counter()

    @given(parameter_lists, st.sampled_from([MAIL_PARAMETERS, MAIL_PARAMETERS, frozenset()]))
    @settings(max_examples=300)
    def fuzz(params: list[str], allowed: frozenset[str]) -> None:
        text = " ".join(params)
        mail = outcome(partial(parse_mail, "FROM:<a@b.c> " + text, allowed), seen)
        if isinstance(mail, ProtocolError):
            return
        p = mail.params
        if p.size is not None:
            seen["size"] += 1
            raw = next(t for t in text.split(" ") if t.partition("=")[0].upper() == "SIZE")[5:]
            assert raw.isascii() and raw.isdigit() and p.size == int(raw)
        for name, decoded in (("auth", p.auth), ("envid", p.envid)):
            if decoded is not None:
                seen[name] += 1
                assert _CONTROLS.search(decoded) is None

    fuzz()
    assert min(seen["refused"], seen["size"], seen["auth"], seen["envid"]) >= 5, seen


@given(parameter_lists)
@settings(max_examples=300)
def test_rcpt_parameters_raise_only_protocol_errors(params: list[str]) -> None:
    rcpt = outcome(lambda: parse_rcpt("TO:<a@b.c> " + " ".join(params)), Counter())
    if not isinstance(rcpt, ProtocolError):
        orcpt = rcpt.params.orcpt
        assert orcpt is None or _CONTROLS.search(orcpt) is None


@given(st.text(max_size=300), st.sampled_from(["HELO", "EHLO"]))
@settings(max_examples=300)
def test_hello_raises_only_protocol_errors(argument: str, verb: str) -> None:
    name = outcome(lambda: parse_hello(argument, verb), Counter())
    if isinstance(name, str):
        assert name and " " not in name and name == argument.split(" ", 1)[0]


sasl_responses = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=150).map(base64.b64encode),
    st.sampled_from([b"*", b"=", b" * ", b"", b"====", b"YQ", b"YQ=="]),
)


@given(sasl_responses)
@settings(max_examples=250)
def test_sasl_decoding_raises_only_protocol_errors(line: bytes) -> None:
    decoded = outcome(lambda: decode_response(line), Counter())
    if isinstance(decoded, bytes):
        outcome(lambda: parse_plain(decoded), Counter())
        outcome(lambda: decode_text(decoded), Counter())


@given(st.lists(st.binary(max_size=40), max_size=4).map(b"\x00".join))
@settings(max_examples=300)
def test_plain_responses_parse_or_are_refused(data: bytes) -> None:
    parts = outcome(lambda: parse_plain(data), Counter())
    if isinstance(parts, tuple):
        assert "\x00".join(parts).encode() == data


ports = st.one_of(st.integers(0, 0xFFFF).map(str), number_texts)
PROXY_STARTS = [
    V1_SIGNATURE + b"TCP4 192.0.2.1 198.51.100.7 ",
    V1_SIGNATURE + b"TCP6 ::1 ::2 ",
    V1_SIGNATURE + b"TCP4 ",
    V1_SIGNATURE,
    V2_SIGNATURE + b"\x21\x11\x00\x0c",
    V2_SIGNATURE + b"\x21\x21",
    V2_SIGNATURE,
    b"",
]


def test_proxy_reader_raises_only_protocol_errors() -> None:
    seen: Counter[str] = Counter()

    @given(
        st.one_of(st.sampled_from(PROXY_STARTS[:2]), st.sampled_from(PROXY_STARTS)),
        st.one_of(
            st.tuples(ports, ports).map(lambda p: f"{p[0]} {p[1]}\r\n".encode()),
            st.binary(max_size=120),
        ),
        st.lists(st.integers(1, 40), max_size=8),
    )
    @settings(max_examples=300)
    def fuzz(start: bytes, rest: bytes, cuts: list[int]) -> None:
        data = start + rest
        reader = ProxyHeaderReader()
        chunks, at = [], 0
        for cut in cuts:
            chunks.append(data[at : at + cut])
            at += cut
        chunks.append(data[at:])
        for chunk in chunks:
            info = outcome(partial(reader.feed, chunk), Counter(), codes=range(421, 422))
            if isinstance(info, ProtocolError):
                seen["bad port" if "port" in info.text else "refused"] += 1
                return
            if isinstance(info, ProxyInfo):
                if info.version == 1 and info.source and info.destination:
                    seen["v1 ports"] += 1
                    ports = data[: data.index(b"\r\n")].split(b" ")[4:]
                    assert ports == [
                        str(info.source[1]).encode(),
                        str(info.destination[1]).encode(),
                    ]
                for endpoint in (info.source, info.destination):
                    assert endpoint is None or 0 <= endpoint[1] <= 0xFFFF
                return

    fuzz()
    assert min(seen["v1 ports"], seen["bad port"], seen["refused"]) >= 5, seen


@given(
    st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.sampled_from([b"\r\n.\r\n", b"\n.\n", b"\r\n", b".", b"\r", b"\n", b"..\r\n"]),
        ),
        max_size=12,
    ),
    st.integers(0, 2000),
    st.integers(3, 1000),
    st.sampled_from(["reject", "normalize"]),
)
@settings(max_examples=250)
def test_data_reader_never_raises(
    chunks: list[bytes], max_size: int, max_line: int, bare_endings: BareEndings
) -> None:
    """The DATA reader records problems instead of raising, and always finds the end."""
    reader = DataReader(max_size, max_line=max_line, bare_endings=bare_endings)
    body = bytearray()
    for chunk in [*chunks, b"\r\n.\r\n"]:
        body += reader.feed(chunk)
        if reader.done:
            break
    assert reader.done
    assert len(body) <= max_size


@given(st.lists(st.binary(max_size=700), max_size=10), st.integers(3, 1000))
@settings(max_examples=300)
def test_line_buffer_never_raises_or_grows(feeds: list[bytes], max_line: int) -> None:
    buf = LineBuffer(max_line)
    for data in feeds:
        buf.feed(data)
        while (line := buf.next_line()) is not None:
            assert line is LINE_TOO_LONG or (isinstance(line, bytes) and len(line) < max_line)
        assert len(buf) <= max_line
