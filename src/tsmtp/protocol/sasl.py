"""Decoding SASL responses for AUTH PLAIN and LOGIN (RFC 4954, RFC 4616)."""

from __future__ import annotations

import binascii

from .errors import ProtocolError


def decode_response(line: bytes) -> bytes:
    """A client's base64 response; ``*`` cancels (501), bad base64 is a 501 too."""
    text = line.strip()
    if text == b"*":
        # A fresh error each time: a shared instance would keep the last raise's frames alive.
        raise ProtocolError(501, "5.7.0", "Authentication cancelled")
    if text == b"=":
        return b""
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        raise ProtocolError(501, "5.5.2", "Cannot decode the base64 response") from None


def decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(501, "5.5.2", "Credentials must be UTF-8") from None


def decode_identity(data: bytes) -> str:
    """A user name or authorization identity: UTF-8 without control characters (a CR or LF
    here would reach every auth plugin and log line)."""
    text = decode_text(data)
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text):
        raise ProtocolError(501, "5.5.2", "User names may not contain control characters")
    return text


def parse_plain(data: bytes) -> tuple[str, str, str]:
    """``authzid NUL authcid NUL password`` into its three parts."""
    parts = data.split(b"\x00")
    if len(parts) != 3 or not parts[1]:
        raise ProtocolError(501, "5.5.2", "Malformed PLAIN response")
    authzid, username, password = (
        decode_identity(parts[0]),
        decode_identity(parts[1]),
        decode_text(parts[2]),
    )
    return authzid, username, password
