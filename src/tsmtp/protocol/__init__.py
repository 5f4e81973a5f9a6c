"""The sans-IO SMTP core: bytes in, typed commands and body bytes out, replies to bytes.

Nothing here does I/O or imports trio; every function is synchronous and driven by tests with
byte strings. Bad input raises :class:`ProtocolError`, which carries the reply to send.
"""

from .addresses import Address, parse_mailbox, parse_path
from .commands import (
    MAIL_PARAMETERS,
    RCPT_PARAMETERS,
    Command,
    Mail,
    MailParams,
    Rcpt,
    RcptParams,
    parse_bdat,
    parse_hello,
    parse_mail,
    parse_parameters,
    parse_rcpt,
    split_command,
)
from .data import BareEndings, DataReader
from .errors import ProtocolError
from .lines import LINE_TOO_LONG, LineBuffer
from .numbers import parse_number
from .proxy import ProxyHeaderReader, ProxyInfo
from .replies import Reply

__all__ = [
    "LINE_TOO_LONG",
    "MAIL_PARAMETERS",
    "RCPT_PARAMETERS",
    "Address",
    "BareEndings",
    "Command",
    "DataReader",
    "LineBuffer",
    "Mail",
    "MailParams",
    "ProtocolError",
    "ProxyHeaderReader",
    "ProxyInfo",
    "Rcpt",
    "RcptParams",
    "Reply",
    "parse_bdat",
    "parse_hello",
    "parse_mail",
    "parse_mailbox",
    "parse_number",
    "parse_parameters",
    "parse_path",
    "parse_rcpt",
    "split_command",
]
