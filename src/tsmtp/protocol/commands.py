"""SMTP command lines parsed into typed commands (RFC 5321 section 4.1, ESMTP parameters)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .addresses import Address, parse_path
from .errors import ProtocolError
from .numbers import parse_number

_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*\Z")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# C0, DEL and C1 (U+0085 NEXT LINE is a line break to str.splitlines): nothing a decoded
# parameter may hand to a plugin, a log line or a DSN header.
_DECODED_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_EMPTY: Mapping[str, str | None] = MappingProxyType({})

#: Parameters this core understands, by the extension that introduces them.
MAIL_PARAMETERS = frozenset({"SIZE", "BODY", "SMTPUTF8", "AUTH", "RET", "ENVID"})
RCPT_PARAMETERS = frozenset({"NOTIFY", "ORCPT"})


def _upper(keyword: str) -> str:
    """Upper-case an ASCII keyword; other text is left as it is, so it matches no keyword.

    SMTP keywords are case-insensitive in ASCII only, but ``str.upper()`` maps U+017F LONG S
    to ``S`` and U+0131 DOTLESS I to ``I``, which would make ``LAST`` or ``QUIT`` of them.
    """
    return keyword.upper() if keyword.isascii() else keyword


def decode_xtext(value: str, parameter: str) -> str:
    """Decode RFC 3461 xtext (``+HH`` escapes) already checked against its syntax.

    A value that decodes to a control character (CR, LF, NUL, ...) is refused with 501: no
    mailbox or envelope id contains one, and a plugin must never be handed one.
    """
    decoded = re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), value)
    if _DECODED_CONTROL.search(decoded) is not None:
        raise ProtocolError(501, "5.5.4", f"{parameter} must not encode control characters")
    return decoded


def parse_parameters(text: str) -> dict[str, str | None]:
    """``KEY=value KEY2`` into ``{"KEY": "value", "KEY2": None}`` (keys upper-cased)."""
    params: dict[str, str | None] = {}
    for token in text.split(" "):
        if not token:
            continue
        key, eq, value = token.partition("=")
        if _KEYWORD.match(key) is None or (eq and not value):
            raise ProtocolError(501, "5.5.4", f"Malformed parameter {token[:40]!r}")
        upper = key.upper()
        if upper in params:
            raise ProtocolError(501, "5.5.4", f"Duplicate parameter {upper}")
        params[upper] = value if eq else None
    return params


@dataclass(frozen=True, slots=True)
class MailParams:
    """MAIL FROM parameters: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531),
    AUTH (RFC 4954), RET and ENVID (RFC 3461), and any a plugin handles itself in ``extra``."""

    size: int | None = None
    body: str | None = None
    smtputf8: bool = False
    auth: str | None = None
    ret: str | None = None
    envid: str | None = None
    extra: Mapping[str, str | None] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class RcptParams:
    """RCPT TO parameters: NOTIFY and ORCPT (RFC 3461), plus ``extra``."""

    notify: tuple[str, ...] | None = None
    orcpt: str | None = None
    extra: Mapping[str, str | None] = field(default_factory=lambda: _EMPTY)


def _mail_params(raw: dict[str, str | None], allowed: frozenset[str]) -> MailParams:
    size = body = auth = ret = envid = None
    smtputf8 = False
    extra: dict[str, str | None] = {}
    for key, value in raw.items():
        if key not in allowed:
            extra[key] = value
            continue
        if key == "SIZE":
            size = parse_number(
                value or "",
                max_digits=20,
                code=501,
                enhanced="5.5.4",
                text="SIZE needs a number of octets",
            )
        elif key == "BODY":
            upper = _upper(value or "")
            if upper not in ("7BIT", "8BITMIME"):
                raise ProtocolError(501, "5.5.4", "BODY must be 7BIT or 8BITMIME")
            body = upper
        elif key == "SMTPUTF8":
            if value is not None:
                raise ProtocolError(501, "5.5.4", "SMTPUTF8 takes no value")
            smtputf8 = True
        elif key == "AUTH":
            if value is None or _XTEXT.match(value) is None:
                raise ProtocolError(501, "5.5.4", "AUTH needs an xtext mailbox or <>")
            auth = decode_xtext(value, "AUTH")
        elif key == "RET":
            upper = _upper(value or "")
            if upper not in ("FULL", "HDRS"):
                raise ProtocolError(501, "5.5.4", "RET must be FULL or HDRS")
            ret = upper
        elif key == "ENVID":
            if value is None or _XTEXT.match(value) is None or len(value) > 100:
                raise ProtocolError(501, "5.5.4", "ENVID must be xtext of at most 100 characters")
            envid = decode_xtext(value, "ENVID")
    return MailParams(
        size, body, smtputf8, auth, ret, envid, MappingProxyType(extra) if extra else _EMPTY
    )


def _rcpt_params(raw: dict[str, str | None], allowed: frozenset[str]) -> RcptParams:
    notify: tuple[str, ...] | None = None
    orcpt = None
    extra: dict[str, str | None] = {}
    for key, value in raw.items():
        if key not in allowed:
            extra[key] = value
            continue
        if key == "NOTIFY":
            items = tuple(_upper(value or "").split(","))
            valid = {"NEVER", "SUCCESS", "FAILURE", "DELAY"}
            if not value or not set(items) <= valid or ("NEVER" in items and len(items) > 1):
                raise ProtocolError(501, "5.5.4", "NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY")
            notify = items
        elif key == "ORCPT":
            addr_type, semi, addr = (value or "").partition(";")
            if not semi or _KEYWORD.match(addr_type) is None or _XTEXT.match(addr) is None:
                raise ProtocolError(501, "5.5.4", "ORCPT must be addr-type;xtext")
            orcpt = f"{addr_type};{decode_xtext(addr, 'ORCPT')}"
    return RcptParams(notify, orcpt, MappingProxyType(extra) if extra else _EMPTY)


@dataclass(frozen=True, slots=True)
class Command:
    """A command line split into its upper-cased verb and its argument text."""

    verb: str
    argument: str


@dataclass(frozen=True, slots=True)
class Mail:
    sender: Address
    params: MailParams


@dataclass(frozen=True, slots=True)
class Rcpt:
    recipient: Address
    params: RcptParams


def split_command(line: bytes) -> Command:
    """Decode one command line (without its line ending) into verb and argument.

    NUL and other control characters are refused; non-ASCII is allowed only as UTF-8 (the
    session refuses it outside SMTPUTF8 paths).
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(500, "5.5.2", "Command line is not valid UTF-8") from None
    if _CONTROL.search(text) is not None:
        raise ProtocolError(500, "5.5.2", "Control characters are not allowed in commands")
    verb, _, argument = text.strip(" \t").partition(" ")
    return Command(_upper(verb), argument.strip(" "))


def parse_mail(argument: str, allowed: frozenset[str] = MAIL_PARAMETERS) -> Mail:
    """Parse the argument of ``MAIL``: ``FROM:<reverse-path> [parameters]``."""
    if _upper(argument[:5]) != "FROM:":
        raise ProtocolError(501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]")
    sender, rest = parse_path(argument[5:], reverse=True)
    return Mail(sender, _mail_params(parse_parameters(rest), allowed))


def parse_rcpt(argument: str, allowed: frozenset[str] = RCPT_PARAMETERS) -> Rcpt:
    """Parse the argument of ``RCPT``: ``TO:<forward-path> [parameters]``."""
    if _upper(argument[:3]) != "TO:":
        raise ProtocolError(501, "5.5.4", "Syntax: RCPT TO:<address> [parameters]")
    recipient, rest = parse_path(argument[3:], reverse=False)
    return Rcpt(recipient, _rcpt_params(parse_parameters(rest), allowed))


_BDAT_SYNTAX = "Syntax: BDAT size [LAST]"


def parse_bdat(argument: str) -> tuple[int, bool]:
    """Parse the argument of ``BDAT`` (RFC 3030): ``chunk-size [LAST]`` into (size, last)."""
    size, space, marker = argument.partition(" ")
    if space and _upper(marker) != "LAST":
        raise ProtocolError(501, "5.5.4", _BDAT_SYNTAX)
    octets = parse_number(size, max_digits=18, code=501, enhanced="5.5.4", text=_BDAT_SYNTAX)
    return octets, bool(space)


_HOSTNAME = re.compile(r"[\x21-\x7e\u0080-\U0010ffff]+\Z")


def parse_hello(argument: str, verb: str) -> str:
    """The domain or address literal given to HELO/EHLO (kept as sent, checked loosely)."""
    name = argument.split(" ", 1)[0]
    if not name or _HOSTNAME.match(name) is None:
        raise ProtocolError(501, "5.5.4", f"Syntax: {verb} hostname")
    return name
