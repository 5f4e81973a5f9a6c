"""Mailbox addresses in MAIL and RCPT paths (RFC 5321 section 4.1.2, RFC 6531 for UTF-8)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from typing_extensions import override

from .errors import ProtocolError

_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff]"
_DOT_STRING = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*\Z")
_QUOTED_STRING = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"\Z')
_LABEL = (
    r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\-\u0080-\U0010ffff]*[A-Za-z0-9\u0080-\U0010ffff])?"
)
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z")
_GENERAL_LITERAL = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+\Z")
_SOURCE_ROUTE = re.compile(r"@[^,:@]+(?:,@[^,:@]+)*:")

MAX_LOCAL_PART = 64
MAX_DOMAIN = 255
MAX_PATH = 256


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox: ``local_part@domain``. The null reverse-path ``<>`` has both parts empty.

    ``local_part`` is kept as the client wrote it (quotes included); ``domain`` is a domain name
    or an address literal such as ``[192.0.2.1]``. ``Postmaster`` without a domain is allowed in
    RCPT and has an empty domain.
    """

    local_part: str
    domain: str

    @classmethod
    def null(cls) -> Address:
        return _NULL

    @property
    def is_null(self) -> bool:
        return not self.local_part and not self.domain

    @property
    def is_ascii(self) -> bool:
        return self.local_part.isascii() and self.domain.isascii()

    @property
    def address(self) -> str:
        """``local@domain`` (or the local part alone, or ``""`` for the null path)."""
        if not self.domain:
            return self.local_part
        return f"{self.local_part}@{self.domain}"

    @override
    def __str__(self) -> str:
        return self.address

    def bracketed(self) -> str:
        """The path as it appears in a command: ``<local@domain>``."""
        return f"<{self.address}>"


_NULL = Address("", "")


def _check_domain(domain: str) -> bool:
    if len(domain.encode("utf-8")) > MAX_DOMAIN:
        return False
    if domain.startswith("[") and domain.endswith("]"):
        inner = domain[1:-1]
        if inner[:5].lower() == "ipv6:":
            try:
                ipaddress.IPv6Address(inner[5:])
            except ValueError:
                return False
            return True
        try:
            ipaddress.IPv4Address(inner)
        except ValueError:
            return _GENERAL_LITERAL.match(inner) is not None
        return True
    return _DOMAIN.match(domain) is not None


def parse_mailbox(text: str, *, allow_postmaster: bool = False) -> Address | None:
    """Parse ``local@domain`` (no angle brackets); None if it is not a valid mailbox."""
    at = text.rfind("@")
    if at < 0:
        if allow_postmaster and text.lower() == "postmaster":
            return Address(text, "")
        return None
    local, domain = text[:at], text[at + 1 :]
    if not local or len(local.encode("utf-8")) > MAX_LOCAL_PART:
        return None
    if _DOT_STRING.match(local) is None and _QUOTED_STRING.match(local) is None:
        return None
    if not _check_domain(domain):
        return None
    return Address(local, domain)


def _split_path(argument: str) -> tuple[str, str]:
    """Split ``<path> params`` into the text inside the brackets and the rest.

    Quoted local parts may contain ``>`` and spaces, so this walks quotes rather than splitting.
    Without brackets (a common client error that servers tolerate) the path ends at a space.
    """
    if not argument.startswith("<"):
        path, _, rest = argument.partition(" ")
        return path, rest
    if '"' not in argument:  # no quoted local part: the first ">" ends the path
        end = argument.find(">")
        if end > 0:
            rest = argument[end + 1 :]
            if not rest or rest.startswith(" "):
                return argument[1:end], rest.lstrip(" ")
        raise ProtocolError(501, "5.5.4", "Syntax error in path: missing or misplaced '>'")
    i, n, quoted = 1, len(argument), False
    while i < n:
        ch = argument[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == ">":
            rest = argument[i + 1 :]
            if rest and not rest.startswith(" "):
                break
            return argument[1:i], rest.lstrip(" ")
        i += 1
    raise ProtocolError(501, "5.5.4", "Syntax error in path: missing or misplaced '>'")


def parse_path(argument: str, *, reverse: bool) -> tuple[Address, str]:
    """Parse a reverse-path (MAIL) or forward-path (RCPT) and return it with the parameter text.

    Source routes (``<@relay:user@host>``) are accepted and ignored, as RFC 5321 section 4.1.1.3
    requires of a receiver.
    """
    enhanced = "5.1.7" if reverse else "5.1.3"
    path, rest = _split_path(argument.strip(" "))
    if len(path.encode("utf-8")) > MAX_PATH:
        raise ProtocolError(501, enhanced, "Path too long")
    if path == "":
        if reverse:
            return _NULL, rest
        raise ProtocolError(501, enhanced, "Empty recipient address")
    route = _SOURCE_ROUTE.match(path)
    if route is not None:
        path = path[route.end() :]
    mailbox = parse_mailbox(path, allow_postmaster=not reverse)
    if mailbox is None:
        kind = "sender" if reverse else "recipient"
        raise ProtocolError(501, enhanced, f"Bad {kind} address syntax")
    return mailbox, rest
