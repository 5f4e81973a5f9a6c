"""Reading HAProxy's PROXY protocol header (versions 1 and 2) in front of the SMTP stream.

A load balancer that speaks the PROXY protocol sends one header before the client's bytes,
telling the server who the real client is. :class:`ProxyHeaderReader` is fed the first bytes of
the connection and returns a :class:`ProxyInfo` once the header is complete; the bytes after it
(the client may already have pipelined ``EHLO``) are left in :attr:`ProxyHeaderReader.leftover`.

The version is decided from the first byte (``P`` for v1, CR for v2) and every later byte is
checked as it arrives, so a client that is not a proxy (say one that sends ``EHLO``) is refused
at once rather than after a full header's worth of bytes. The reader never holds more than the
largest header it accepts: 107 bytes for v1, 16 plus ``max_v2_payload`` bytes for v2.

Any bad header raises :class:`ProtocolError` with code 421 and ``4.7.0``; the server closes the
connection rather than answering it, so the text is for the log.

Choices made where the specification leaves room:

* v1 lines end with CRLF only; a bare LF or CR inside a ``TCP4``/``TCP6`` line is refused.
  Addresses must be in the form the spec gives (IPv4 dotted quad without leading zeros, IPv6
  without a zone index), ports are 1 to 5 decimal digits without leading zeros, and fields are
  separated by exactly one space. IPv6 addresses are returned in the compressed form of
  :mod:`ipaddress`, not as sent.
* v1 ``UNKNOWN`` must be followed by a space or the CRLF; anything after it up to the CRLF is
  ignored and the result has no addresses.
* v2 ``LOCAL`` (health checks from the proxy itself) is accepted with any defined address family;
  its address block is discarded and the result has no addresses.
* v2 ``PROXY`` over TCP/IPv4 or TCP/IPv6 gives the addresses; ``UNSPEC`` gives none. UDP and UNIX
  socket families are refused: SMTP runs over a TCP stream, so such a header means a
  misconfigured proxy, and accepting it without an address would hide the real client.
* v2 TLVs after the addresses are skipped, but their framing (type, 2-byte length, value) must
  fill the rest of the block exactly. Nothing in them (not even a CRC32C) is checked.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final, Literal, overload

from .errors import ProtocolError
from .numbers import parse_number

#: The longest v1 header, CRLF included, as the specification sets it.
V1_MAX_LINE: Final = 107
#: The default bound on the v2 block after the 16-byte fixed part (addresses and TLVs).
V2_MAX_PAYLOAD: Final = 1024

V1_SIGNATURE: Final = b"PROXY "
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_FIXED = 16  # signature, version/command, family/transport, length

_LOCAL = 0x0
_PROXY = 0x1
_UNSPEC = 0x00
_TCP4 = 0x11
_TCP6 = 0x21
_FAMILY_NAMES: Final = {
    0x00: "UNSPEC",
    0x11: "TCP over IPv4",
    0x12: "UDP over IPv4",
    0x21: "TCP over IPv6",
    0x22: "UDP over IPv6",
    0x31: "UNIX stream",
    0x32: "UNIX datagram",
}

_V1_PROTOCOLS: Final = (b"TCP4", b"TCP6", b"UNKNOWN")
_FIELD_NAMES: Final = ("source address", "destination address", "source port", "destination port")
_IPV4_CHARS: Final = frozenset(b"0123456789.")
_IPV6_CHARS: Final = frozenset(b"0123456789abcdefABCDEF:.")
_IPV4_MAX = len("255.255.255.255")
_IPV6_MAX = len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255")


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    """What a PROXY header says about the connection.

    ``source`` is the real client and ``destination`` the address it connected to, each as
    ``(ip, port)``; both are None when the header carries no addresses (v1 ``UNKNOWN``, v2
    ``LOCAL`` or ``UNSPEC``), in which case the socket's own endpoints apply.
    """

    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    version: int


def _fail(text: str) -> ProtocolError:
    return ProtocolError(421, "4.7.0", text)


class ProxyHeaderReader:
    """Feed the first bytes of a connection until the PROXY header is complete.

    :meth:`feed` returns None while more bytes are needed, the :class:`ProxyInfo` once the header
    is complete (after which :attr:`leftover` holds the bytes that followed it), or raises
    :class:`ProtocolError` as soon as the bytes seen cannot start a valid header. Feeding again
    after an error raises the same error; feeding after success is a programming error.
    """

    def __init__(self, *, max_v2_payload: int = V2_MAX_PAYLOAD) -> None:
        if not 0 <= max_v2_payload <= 0xFFFF:
            raise ValueError("max_v2_payload must be between 0 and 65535")
        self.max_v2_payload = max_v2_payload
        self.leftover = b""
        self._limit = max(V1_MAX_LINE, _V2_FIXED + max_v2_payload)
        self._buf = b""
        self._done = False
        self._error: ProtocolError | None = None

    def feed(self, data: bytes) -> ProxyInfo | None:
        """Consume ``data``; return the header's contents once complete, else None."""
        if self._done:
            raise RuntimeError("ProxyHeaderReader fed after the header was complete")
        if self._error is not None:
            raise self._error
        # Hold at most as many bytes as the longest header; the rest can only be leftover.
        take = self._limit - len(self._buf)
        buf = self._buf + data[:take]
        try:
            result = self._parse(buf)
        except ProtocolError as exc:
            self._error = exc
            self._buf = b""
            raise
        if result is None:
            # Incomplete headers are always shorter than the limit, so nothing was cut off.
            self._buf = buf
            return None
        info, end = result
        self.leftover = buf[end:] + data[take:]
        self._buf = b""
        self._done = True
        return info

    def _parse(self, buf: bytes) -> tuple[ProxyInfo, int] | None:
        if not buf:
            return None
        if buf[0] == V1_SIGNATURE[0]:
            if not buf.startswith(V1_SIGNATURE[: len(buf)]):
                raise _fail("not a PROXY protocol header (bad v1 signature)")
            return self._parse_v1(buf)
        if buf[0] == V2_SIGNATURE[0]:
            if not buf.startswith(V2_SIGNATURE[: len(buf)]):
                raise _fail("not a PROXY protocol header (bad v2 signature)")
            return self._parse_v2(buf)
        raise _fail("not a PROXY protocol header")

    # --- version 1 ----------------------------------------------------------------------------

    def _parse_v1(self, buf: bytes) -> tuple[ProxyInfo, int] | None:
        end = buf.find(b"\r\n", 0, V1_MAX_LINE)
        if end >= 0:
            return _v1_line(buf[:end], complete=True), end + 2
        if len(buf) >= V1_MAX_LINE:
            raise _fail(f"PROXY v1 header longer than {V1_MAX_LINE} bytes")
        # No CRLF yet: the last byte may be the CR of one still to come.
        _v1_line(buf[:-1] if buf.endswith(b"\r") else buf, complete=False)
        return None

    # --- version 2 ----------------------------------------------------------------------------

    def _parse_v2(self, buf: bytes) -> tuple[ProxyInfo, int] | None:
        if len(buf) <= len(V2_SIGNATURE):
            return None
        version, command = buf[12] >> 4, buf[12] & 0x0F
        if version != 2:
            raise _fail(f"unsupported PROXY v2 version {version}")
        if command not in (_LOCAL, _PROXY):
            raise _fail(f"unknown PROXY v2 command {command}")
        if len(buf) < 14:
            return None
        family = buf[13]
        name = _FAMILY_NAMES.get(family)
        if name is None:
            raise _fail(f"unknown PROXY v2 address family 0x{family:02x}")
        if command == _PROXY and family not in (_UNSPEC, _TCP4, _TCP6):
            raise _fail(f"unsupported PROXY v2 address family {name}")
        if len(buf) < _V2_FIXED:
            return None
        length = int.from_bytes(buf[14:16], "big")
        if length > self.max_v2_payload:
            raise _fail(f"PROXY v2 block of {length} bytes exceeds {self.max_v2_payload}")
        address_size = 0
        if command == _PROXY:
            address_size = {_UNSPEC: 0, _TCP4: 12, _TCP6: 36}[family]
        if length < address_size:
            raise _fail(f"PROXY v2 block of {length} bytes too short for {name} addresses")
        total = _V2_FIXED + length
        if len(buf) < total:
            return None
        if address_size == 0:
            # LOCAL or UNSPEC: the block (addresses and TLVs alike) is to be ignored.
            return ProxyInfo(None, None, 2), total
        block = buf[_V2_FIXED:total]
        _check_tlvs(block[address_size:])
        ip_size = 4 if family == _TCP4 else 16
        ip_type = ipaddress.IPv4Address if family == _TCP4 else ipaddress.IPv6Address
        ips = block[: 2 * ip_size]
        ports = block[2 * ip_size : address_size]
        source = (str(ip_type(ips[:ip_size])), int.from_bytes(ports[:2], "big"))
        destination = (str(ip_type(ips[ip_size:])), int.from_bytes(ports[2:], "big"))
        return ProxyInfo(source, destination, 2), total


@overload
def _v1_line(line: bytes, *, complete: Literal[True]) -> ProxyInfo: ...
@overload
def _v1_line(line: bytes, *, complete: Literal[False]) -> None: ...
def _v1_line(line: bytes, *, complete: bool) -> ProxyInfo | None:
    """Check a v1 line (without its CRLF) and return what it says.

    If not ``complete`` (no CRLF yet), the line is checked only as far as it goes, raising as
    soon as no continuation could make it valid, and None is returned.
    """
    rest = line[len(V1_SIGNATURE) :]
    space = rest.find(b" ")
    protocol = rest if space < 0 else rest[:space]
    if space < 0 and not complete:
        if not any(p.startswith(protocol) for p in _V1_PROTOCOLS):
            raise _fail(f"unknown PROXY v1 protocol {protocol[:16]!r}")
        return None
    if protocol == b"UNKNOWN":
        # Whatever follows UNKNOWN up to the CRLF is to be ignored.
        return ProxyInfo(None, None, 1) if complete else None
    if protocol not in _V1_PROTOCOLS:
        raise _fail(f"unknown PROXY v1 protocol {protocol[:16]!r}")
    if space < 0:
        raise _fail(f"PROXY v1 {protocol.decode()} header without addresses")
    if b"\r" in rest or b"\n" in rest:
        raise _fail("stray CR or LF in PROXY v1 header")
    six = protocol == b"TCP6"
    fields = rest[space + 1 :].split(b" ")
    if b"" in (fields if complete else fields[:-1]):
        raise _fail("empty field in PROXY v1 header (fields take exactly one space between)")
    if len(fields) > 4 or (complete and len(fields) < 4):
        raise _fail(f"PROXY v1 header needs 4 fields after the protocol, got {len(fields)}")
    if not complete:
        # Every field but the last is whole; the last is checked as far as it goes.
        for i, field in enumerate(fields[:-1]):
            if i < 2:
                _v1_ip(field, i, six)
            else:
                _v1_port(field, i)
        _v1_partial(fields[-1], len(fields) - 1, six)
        return None
    source = (_v1_ip(fields[0], 0, six), _v1_port(fields[2], 2))
    destination = (_v1_ip(fields[1], 1, six), _v1_port(fields[3], 3))
    return ProxyInfo(source, destination, 1)


def _not_an_ip(field: bytes, index: int, six: bool) -> ProtocolError:
    return _fail(
        f"PROXY v1 {_FIELD_NAMES[index]} {field[:48]!r} is not an IPv{6 if six else 4} address"
    )


def _v1_ip_chars(field: bytes, index: int, six: bool) -> None:
    """Refuse an address (or the start of one) that is too long or has a foreign character."""
    allowed, size = (_IPV6_CHARS, _IPV6_MAX) if six else (_IPV4_CHARS, _IPV4_MAX)
    if len(field) > size or not allowed.issuperset(field):
        raise _not_an_ip(field, index, six)


def _v1_ip(field: bytes, index: int, six: bool) -> str:
    _v1_ip_chars(field, index, six)  # also keeps zone indexes ("%eth0") out of IPv6Address
    text = field.decode("ascii")
    try:
        ip = ipaddress.IPv6Address(text) if six else ipaddress.IPv4Address(text)
    except ValueError:
        raise _not_an_ip(field, index, six) from None
    return str(ip)


def _v1_port(field: bytes, index: int) -> int:
    return parse_number(
        field,
        max_digits=5,
        maximum=0xFFFF,
        leading_zeros=False,
        code=421,
        enhanced="4.7.0",
        text=f"PROXY v1 {_FIELD_NAMES[index]} {field[:16]!r} is not a port number",
    )


def _v1_partial(field: bytes, index: int, six: bool) -> None:
    """Refuse a field still being received as soon as no continuation could make it valid."""
    if index < 2:
        _v1_ip_chars(field, index, six)
    elif field:
        _v1_port(field, index)


def _check_tlvs(tlvs: bytes) -> None:
    """Walk the TLVs after the addresses, checking only that they fill the block exactly."""
    at = 0
    while at < len(tlvs):
        if len(tlvs) - at < 3:
            raise _fail("truncated TLV header in PROXY v2 block")
        at += 3 + int.from_bytes(tlvs[at + 1 : at + 3], "big")
        if at > len(tlvs):
            raise _fail("TLV longer than the PROXY v2 block")
