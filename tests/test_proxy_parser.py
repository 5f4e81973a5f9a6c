"""The PROXY protocol header reader, driven with byte strings only."""

from __future__ import annotations

import ipaddress
import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsmtp.protocol.errors import ProtocolError
from tsmtp.protocol.proxy import (
    V1_MAX_LINE,
    V1_SIGNATURE,
    V2_MAX_PAYLOAD,
    V2_SIGNATURE,
    ProxyHeaderReader,
    ProxyInfo,
)

EHLO = b"EHLO client.example\r\n"


def v2(
    body: bytes = b"",
    *,
    command: int = 1,
    family: int = 0x11,
    version: int = 2,
    length: int | None = None,
) -> bytes:
    """A v2 header with the given block after the fixed part."""
    size = len(body) if length is None else length
    return V2_SIGNATURE + bytes([version << 4 | command, family]) + struct.pack(">H", size) + body


def v4_block(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + struct.pack(">HH", sport, dport)
    )


def v6_block(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + struct.pack(">HH", sport, dport)
    )


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack(">H", len(value)) + value


def read(*chunks: bytes) -> tuple[ProxyInfo, bytes]:
    """Feed chunks until the header is complete; return it and every byte after it."""
    reader = ProxyHeaderReader()
    for i, chunk in enumerate(chunks):
        info = reader.feed(chunk)
        if info is not None:
            return info, reader.leftover + b"".join(chunks[i + 1 :])
    raise AssertionError("header never completed")


def error_of(data: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        read(data)
    return caught.value


def fails_after(data: bytes) -> int | None:
    """How many bytes, fed one at a time, it takes to refuse ``data`` (None if never)."""
    reader = ProxyHeaderReader()
    for i in range(len(data)):
        try:
            if reader.feed(data[i : i + 1]) is not None:
                return None
        except ProtocolError:
            return i + 1
    return None


V1_TCP4 = b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 25\r\n"
V1_TCP6 = b"PROXY TCP6 2001:db8::1 2001:db8:0:0::2 65535 587\r\n"
V2_TCP4 = v2(v4_block("192.0.2.1", "198.51.100.7", 56324, 25))
V2_TCP6_TLVS = v2(
    v6_block("2001:db8::1", "2001:db8::2", 1, 465) + tlv(0x02, b"mx.example") + tlv(0x04, b""),
    family=0x21,
)

#: Every valid header used below, with what it means.
VALID: list[tuple[bytes, ProxyInfo]] = [
    (V1_TCP4, ProxyInfo(("192.0.2.1", 56324), ("198.51.100.7", 25), 1)),
    (V1_TCP6, ProxyInfo(("2001:db8::1", 65535), ("2001:db8::2", 587), 1)),
    (b"PROXY UNKNOWN\r\n", ProxyInfo(None, None, 1)),
    (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", ProxyInfo(None, None, 1)),
    (V2_TCP4, ProxyInfo(("192.0.2.1", 56324), ("198.51.100.7", 25), 2)),
    (V2_TCP6_TLVS, ProxyInfo(("2001:db8::1", 1), ("2001:db8::2", 465), 2)),
    (v2(command=0, family=0x00), ProxyInfo(None, None, 2)),
    (v2(b"junk", command=0, family=0x11), ProxyInfo(None, None, 2)),
    (v2(b"\x00" * 12, family=0x00), ProxyInfo(None, None, 2)),
]


# --- version 1 -----------------------------------------------------------------------------------


def test_v1_tcp4() -> None:
    assert read(V1_TCP4) == (ProxyInfo(("192.0.2.1", 56324), ("198.51.100.7", 25), 1), b"")


def test_v1_tcp6_address_is_normalized() -> None:
    info, _ = read(V1_TCP6)
    assert info == ProxyInfo(("2001:db8::1", 65535), ("2001:db8::2", 587), 1)


def test_v1_tcp6_with_embedded_ipv4() -> None:
    info, _ = read(b"PROXY TCP6 ::ffff:192.0.2.1 ::1 0 0\r\n")
    assert info.source == (str(ipaddress.IPv6Address("::ffff:192.0.2.1")), 0)


def test_v1_unknown_ignores_the_rest_of_the_line() -> None:
    assert read(b"PROXY UNKNOWN\r\n") == (ProxyInfo(None, None, 1), b"")
    info, rest = read(b"PROXY UNKNOWN anything \x00\xff at all\n\r\r\nEHLO x\r\n")
    assert info == ProxyInfo(None, None, 1)
    assert rest == b"EHLO x\r\n"


def test_v1_longest_line_is_accepted_one_more_byte_is_not() -> None:
    longest = b"PROXY UNKNOWN " + b"x" * (V1_MAX_LINE - 16) + b"\r\n"
    assert len(longest) == V1_MAX_LINE
    assert read(longest + EHLO) == (ProxyInfo(None, None, 1), EHLO)
    too_long = longest[:-2] + b"y\r\n"
    assert "longer than 107" in error_of(too_long).text
    assert fails_after(too_long) == V1_MAX_LINE


def test_v1_longest_tcp6_line_is_the_limit() -> None:
    # The spec's 107 bytes is this line (104) plus slack; the v4-in-v6 notation does not fit.
    addr = b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = b"PROXY TCP6 " + addr + b" " + addr + b" 65535 65535\r\n"
    assert len(line) == 104
    assert read(line)[0] == ProxyInfo(
        ("ffff:" * 7 + "ffff", 65535), ("ffff:" * 7 + "ffff", 65535), 1
    )
    mixed = b"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
    too_long = b"PROXY TCP6 " + mixed + b" " + mixed + b" 1 2\r\n"
    assert "longer than 107" in error_of(too_long).text


def test_v1_endless_line_is_refused_at_the_limit_even_in_one_chunk() -> None:
    reader = ProxyHeaderReader()
    with pytest.raises(ProtocolError):
        reader.feed(b"PROXY UNKNOWN " + b"x" * 1_000_000)


def test_error_bytes_and_code() -> None:
    err = error_of(b"EHLO x\r\n")
    assert (err.code, err.enhanced) == (421, "4.7.0")


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 25\n", "stray CR or LF"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 25\rX\r\n", "stray CR or LF"),
        (b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", "unknown PROXY v1 protocol"),
        (b"PROXY tcp4 1.2.3.4 1.2.3.4 1 2\r\n", "unknown PROXY v1 protocol"),
        (b"PROXY UNKNOWNX\r\n", "unknown PROXY v1 protocol"),
        (b"PROXY \r\n", "unknown PROXY v1 protocol"),
        (b"PROXY  TCP4 1.2.3.4 1.2.3.4 1 2\r\n", "unknown PROXY v1 protocol"),
        (b"PROXY TCP4\r\n", "without addresses"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", "needs 4 fields"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", "needs 4 fields"),
        (b"PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n", "empty field"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n", "empty field"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1  2\r\n", "empty field"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1\t 2\r\n", "source port"),
        # addresses
        (b"PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n", "source address"),
        (b"PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n", "source address"),
        (b"PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n", "source address"),
        (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "destination address"),
        (b"PROXY TCP4 1.2.3.4 localhost 1 2\r\n", "destination address"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "source address"),
        (b"PROXY TCP6 ::1 fe80::1%eth0 1 2\r\n", "destination address"),
        (b"PROXY TCP6 ::1 1:2:3:4:5:6:7:8:9 1 2\r\n", "destination address"),
        (b"PROXY TCP6 ::1 [::1] 1 2\r\n", "destination address"),
        # ports
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", "source port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 99999\r\n", "destination port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 025 2\r\n", "source port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 +25 2\r\n", "source port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n", "source port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 0x19\r\n", "destination port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2_5\r\n", "destination port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 000001\r\n", "destination port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 \xd9\xa1\r\n", "destination port"),
    ],
)
def test_v1_malformed(header: bytes, reason: str) -> None:
    err = error_of(header)
    assert (err.code, err.enhanced) == (421, "4.7.0")
    assert reason in err.text
    # Byte by byte, the same header is refused too, never accepted.
    assert fails_after(header) is not None


def test_v1_port_zero_is_allowed() -> None:
    info, _ = read(b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n")
    assert info == ProxyInfo(("0.0.0.0", 0), ("255.255.255.255", 65535), 1)


@pytest.mark.parametrize(
    ("data", "at_most"),
    [
        (b"PROXY TCP5", len(b"PROXY TCP5")),
        (b"PROXY TCP4 1.2.3.4x", len(b"PROXY TCP4 1.2.3.4x")),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 012", len(b"PROXY TCP4 1.2.3.4 1.2.3.4 01")),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 123456", len(b"PROXY TCP4 1.2.3.4 1.2.3.4 1 123456")),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 ", len(b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 ")),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4\n", len(b"PROXY TCP4 1.2.3.4 1.2.3.4\n")),
        (b"PROXY TCP4 1.2.3.4 ::1 ", len(b"PROXY TCP4 1.2.3.4 :")),
    ],
)
def test_v1_is_refused_as_soon_as_it_goes_wrong(data: bytes, at_most: int) -> None:
    failed = fails_after(data)
    assert failed is not None
    assert failed <= at_most


# --- version 2 -----------------------------------------------------------------------------------


def test_v2_proxy_ipv4() -> None:
    info, rest = read(V2_TCP4)
    assert info == ProxyInfo(("192.0.2.1", 56324), ("198.51.100.7", 25), 2)
    assert rest == b""


def test_v2_proxy_ipv4_with_tlvs() -> None:
    body = v4_block("10.0.0.1", "10.0.0.2", 1234, 25)
    body += tlv(0x01, b"smtp") + tlv(0x20, b"\x01" + b"\x00" * 4) + tlv(0x04, b"\x00" * 30)
    assert read(v2(body) + EHLO) == (ProxyInfo(("10.0.0.1", 1234), ("10.0.0.2", 25), 2), EHLO)


def test_v2_proxy_ipv6() -> None:
    info, _ = read(v2(v6_block("::1", "2001:db8::25", 40000, 25), family=0x21))
    assert info == ProxyInfo(("::1", 40000), ("2001:db8::25", 25), 2)


def test_v2_proxy_ipv6_with_tlvs() -> None:
    info, rest = read(V2_TCP6_TLVS + EHLO)
    assert info == ProxyInfo(("2001:db8::1", 1), ("2001:db8::2", 465), 2)
    assert rest == EHLO


@pytest.mark.parametrize("family", [0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32])
def test_v2_local_has_no_addresses_whatever_the_family(family: int) -> None:
    header = v2(v4_block("1.2.3.4", "5.6.7.8", 1, 2) + b"\xff", command=0, family=family)
    assert read(header + EHLO) == (ProxyInfo(None, None, 2), EHLO)


def test_v2_local_without_block() -> None:
    assert read(v2(command=0, family=0) + EHLO) == (ProxyInfo(None, None, 2), EHLO)


def test_v2_proxy_unspec_has_no_addresses() -> None:
    assert read(v2(b"whatever", family=0x00)) == (ProxyInfo(None, None, 2), b"")


def test_v2_largest_block_is_accepted() -> None:
    body = v4_block("1.2.3.4", "5.6.7.8", 1, 2) + tlv(0x04, b"\x00" * (V2_MAX_PAYLOAD - 15))
    assert len(body) == V2_MAX_PAYLOAD
    info, rest = read(v2(body) + EHLO)
    assert info.source == ("1.2.3.4", 1)
    assert rest == EHLO


def test_v2_block_too_big_is_refused_before_it_arrives() -> None:
    header = v2(length=V2_MAX_PAYLOAD + 1)
    assert len(header) == 16
    assert fails_after(header) == 16
    assert "exceeds 1024" in error_of(header).text
    assert fails_after(v2(length=0xFFFF)) == 16


def test_v2_max_payload_is_configurable() -> None:
    reader = ProxyHeaderReader(max_v2_payload=12)
    assert reader.feed(V2_TCP4) is not None
    with pytest.raises(ProtocolError):
        ProxyHeaderReader(max_v2_payload=12).feed(V2_TCP6_TLVS)
    with pytest.raises(ValueError):
        ProxyHeaderReader(max_v2_payload=70000)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (V2_SIGNATURE[:-1] + b"X" + V2_TCP4[12:], "bad v2 signature"),
        (b"\r\n\r\n\x01" + V2_TCP4[5:], "bad v2 signature"),
        (v2(v4_block("1.2.3.4", "5.6.7.8", 1, 2), version=1), "unsupported PROXY v2 version 1"),
        (v2(v4_block("1.2.3.4", "5.6.7.8", 1, 2), version=3), "unsupported PROXY v2 version 3"),
        (v2(version=0, command=0, family=0), "unsupported PROXY v2 version 0"),
        (v2(v4_block("1.2.3.4", "5.6.7.8", 1, 2), command=2), "unknown PROXY v2 command 2"),
        (v2(command=0xF), "unknown PROXY v2 command 15"),
        (v2(v4_block("1.2.3.4", "5.6.7.8", 1, 2), family=0x13), "unknown PROXY v2 address family"),
        (v2(command=0, family=0x41), "unknown PROXY v2 address family"),
        (v2(command=0, family=0x10), "unknown PROXY v2 address family"),
        (v2(v4_block("1.2.3.4", "5.6.7.8", 1, 2), family=0x12), "unsupported"),
        (v2(v6_block("::1", "::2", 1, 2), family=0x22), "unsupported"),
        (v2(b"\x00" * 216, family=0x31), "unsupported"),
        (v2(b"\x00" * 216, family=0x32), "unsupported"),
        (v2(v4_block("1.2.3.4", "5.6.7.8", 1, 2)[:-1]), "too short"),
        (v2(v4_block("1.2.3.4", "5.6.7.8", 1, 2), family=0x21), "too short"),
        (v2(b""), "too short"),
        (v2(length=V2_MAX_PAYLOAD + 1), "exceeds"),
        (v2(v4_block("1.2.3.4", "5.6.7.8", 1, 2) + b"\x04\x00"), "truncated TLV"),
        (v2(v4_block("1.2.3.4", "5.6.7.8", 1, 2) + b"\x04\x00\x02x"), "TLV longer"),
        (v2(v4_block("1.2.3.4", "5.6.7.8", 1, 2) + tlv(4, b"ok") + b"\x00"), "truncated TLV"),
    ],
)
def test_v2_malformed(header: bytes, reason: str) -> None:
    err = error_of(header + EHLO)
    assert (err.code, err.enhanced) == (421, "4.7.0")
    assert reason in err.text
    assert fails_after(header) is not None


def test_v2_bad_version_is_refused_at_its_byte() -> None:
    assert fails_after(v2(V2_TCP4[16:], version=1)) == 13
    assert fails_after(v2(V2_TCP4[16:], family=0x12)) == 14


def test_v2_is_not_completed_by_a_short_block() -> None:
    reader = ProxyHeaderReader()
    assert reader.feed(V2_TCP4[:-1]) is None
    assert reader.feed(V2_TCP4[-1:] + EHLO) is not None
    assert reader.leftover == EHLO


# --- neither -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"EHLO client.example\r\n",
        b"HELO x\r\n",
        b"QUIT\r\n",
        b"\x16\x03\x01\x02\x00",  # a TLS ClientHello
        b"GET / HTTP/1.1\r\n",
        b"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n",
        b"PROXZ TCP4 1.2.3.4 1.2.3.4 1 2\r\n",
        b"PROXYTCP4 1.2.3.4 1.2.3.4 1 2\r\n",
        b"PRO\r\n",
        b"\r\nEHLO x\r\n",
        b"\r\n\r\nEHLO x\r\n",
        b"\n",
        b"\x00" * 20,
    ],
)
def test_non_proxy_bytes_fail_at_once(data: bytes) -> None:
    failed = fails_after(data)
    assert failed is not None
    assert failed <= 6
    assert error_of(data).code == 421


def test_ehlo_fails_on_its_first_byte() -> None:
    assert fails_after(b"EHLO x\r\n") == 1
    assert fails_after(b"PROXZ") == 5


def test_signatures_are_what_the_spec_says() -> None:
    assert V1_SIGNATURE == b"PROXY "
    assert V2_SIGNATURE == b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"


# --- feeding -------------------------------------------------------------------------------------


def test_empty_feeds_need_more() -> None:
    reader = ProxyHeaderReader()
    assert reader.feed(b"") is None
    assert reader.feed(b"PROXY") is None
    assert reader.feed(b"") is None
    assert reader.feed(b" UNKNOWN\r\n") == ProxyInfo(None, None, 1)


def test_feeding_after_the_header_is_a_bug() -> None:
    reader = ProxyHeaderReader()
    assert reader.feed(V1_TCP4) is not None
    with pytest.raises(RuntimeError):
        reader.feed(EHLO)


def test_an_error_sticks() -> None:
    reader = ProxyHeaderReader()
    with pytest.raises(ProtocolError) as first:
        reader.feed(b"EHLO")
    with pytest.raises(ProtocolError) as again:
        reader.feed(V1_TCP4)
    assert again.value is first.value


def test_leftover_carries_a_large_pipelined_stream() -> None:
    stream = EHLO + b"MAIL FROM:<a@b>\r\n" + b"x" * 100_000
    assert read(V1_TCP4 + stream)[1] == stream
    assert read(V2_TCP6_TLVS + stream)[1] == stream


@pytest.mark.parametrize(("header", "expected"), VALID)
def test_split_at_every_boundary(header: bytes, expected: ProxyInfo) -> None:
    data = header + EHLO
    for cut in range(len(data) + 1):
        assert read(data[:cut], data[cut:]) == (expected, EHLO), cut
    assert read(*(data[i : i + 1] for i in range(len(data)))) == (expected, EHLO)


@pytest.mark.parametrize(("header", "expected"), VALID)
def test_one_byte_at_a_time_completes_on_the_last_header_byte(
    header: bytes, expected: ProxyInfo
) -> None:
    reader = ProxyHeaderReader()
    for byte in header[:-1]:
        assert reader.feed(bytes([byte])) is None
    assert reader.feed(header[-1:]) == expected
    assert reader.leftover == b""


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at random places (empty chunks included)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@given(st.data(), st.sampled_from(VALID), st.binary(max_size=200))
def test_random_chunks_give_the_same_result(
    data: st.DataObject, case: tuple[bytes, ProxyInfo], tail: bytes
) -> None:
    header, expected = case
    chunks = data.draw(chunked(header + EHLO + tail))
    assert read(*chunks) == (expected, EHLO + tail)


@given(st.ip_addresses(), st.ip_addresses(), st.integers(0, 65535), st.integers(0, 65535))
def test_v1_round_trip(
    src: ipaddress.IPv4Address | ipaddress.IPv6Address,
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address,
    sport: int,
    dport: int,
) -> None:
    proto = b"TCP4" if src.version == 4 else b"TCP6"
    line = b"PROXY %s %s %s %d %d\r\n" % (proto, str(src).encode(), str(dst).encode(), sport, dport)
    if src.version != dst.version:
        with pytest.raises(ProtocolError):
            read(line)
        return
    assert len(line) <= V1_MAX_LINE
    assert read(line + EHLO) == (ProxyInfo((str(src), sport), (str(dst), dport), 1), EHLO)


@given(
    st.ip_addresses(v=6),
    st.ip_addresses(v=6),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=8),
)
def test_v2_round_trip(
    src: ipaddress.IPv6Address,
    dst: ipaddress.IPv6Address,
    sport: int,
    dport: int,
    tlvs: list[tuple[int, bytes]],
) -> None:
    body = src.packed + dst.packed + struct.pack(">HH", sport, dport)
    body += b"".join(tlv(kind, value) for kind, value in tlvs)
    info, rest = read(v2(body, family=0x21) + EHLO)
    assert info == ProxyInfo((str(src), sport), (str(dst), dport), 2)
    assert rest == EHLO


#: Prefixes that get random input past the signature checks and into the deeper parsing.
_PREFIXES = [
    b"",
    b"PROXY ",
    b"PROXY TCP4 ",
    b"PROXY TCP4 1.2.3.4 ",
    b"PROXY TCP6 ",
    b"PROXY TCP6 ::1 ::2 ",
    b"PROXY UNKNOWN",
    V2_SIGNATURE,
    V2_SIGNATURE + b"\x21",
    V2_SIGNATURE + b"\x21\x11",
    V2_SIGNATURE + b"\x21\x21\x00",
    V2_SIGNATURE + b"\x20",
]


@given(st.data(), st.sampled_from(_PREFIXES), st.binary(max_size=300))
def test_arbitrary_bytes_give_info_none_or_protocol_error(
    data: st.DataObject, prefix: bytes, noise: bytes
) -> None:
    reader = ProxyHeaderReader()
    fed = 0
    for chunk in data.draw(chunked(prefix + noise)):
        try:
            info = reader.feed(chunk)
        except ProtocolError as exc:
            assert (exc.code, exc.enhanced) == (421, "4.7.0")
            assert fed + len(chunk) > 0
            return
        fed += len(chunk)
        if info is not None:
            assert isinstance(info, ProxyInfo)
            assert info.version in (1, 2)
            assert len(reader.leftover) <= len(prefix + noise)
            return
        assert fed <= 16 + V2_MAX_PAYLOAD
