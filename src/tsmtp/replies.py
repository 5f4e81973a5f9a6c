"""The core's own replies. A hook's default refusals live in its entry of the hook table
(``tsmtp.hooks``), those for commands out of sequence with their rules in protocol.sequencing."""

from __future__ import annotations

from .protocol import Reply

MAIL_DENYSOFT_TEXT = "sender {} denied, try again later"
RCPT_DENYSOFT_TEXT = "recipient {} denied, try again later"
QUEUE_DECLINED = Reply.of(451, "Queuing declined or disabled, try later", "4.3.0")
BARE_ENDINGS = Reply.of(
    550, "Message refused: bare CR or LF in data; lines must end with CRLF", "5.6.0"
)
LONG_LINE = Reply.of(554, "Message refused: a line is longer than 1000 octets", "5.6.0")
VRFY_DEFAULT = Reply.of(
    252, "Cannot VRFY user, but will accept message and attempt delivery", "2.0.0"
)
NOT_IMPLEMENTED = Reply.of(502, "Command not implemented", "5.5.1")
OK = Reply.of(250, "OK", "2.0.0")
TOO_MANY_RECIPIENTS = Reply.of(452, "Too many recipients", "4.5.3")
TOO_MANY_ERRORS = Reply.of(421, "Too many errors, closing connection", "4.7.0")
TOO_MANY_REFUSED_RECIPIENTS = Reply.of(
    421, "Too many refused recipients, closing connection", "4.7.0"
)
LINE_TOO_LONG = Reply.of(500, "Line too long", "5.5.2")
TIMEOUT = Reply.of(421, "Timeout exceeded, closing connection", "4.4.2")
EVICTED = Reply.of(421, "Server busy, closing idle connection", "4.7.0")
TOO_MANY_CONNECTIONS = Reply.of(421, "Too many connections, try again later", "4.3.2")
INTERNAL_ERROR = Reply.of(421, "Internal error, closing connection", "4.3.0")
TOO_MANY_FROM_IP = Reply.of(421, "Too many connections from your address, try later", "4.7.0")
RATE_LIMITED = Reply.of(421, "Connection rate limit exceeded, try later", "4.7.0")
EARLY_TALKER = Reply.of(554, "Protocol error: you talked before my greeting", "5.5.1")
STARTTLS_READY = Reply.of(220, "Ready to start TLS", "2.0.0")
AUTH_OK = Reply.of(235, "Authentication successful", "2.7.0")
AUTH_NEEDS_TLS = Reply.of(
    538, "Encryption required for requested authentication mechanism", "5.7.11"
)
AUTH_TOO_MANY = Reply.of(421, "Too many authentication failures", "4.7.0")
AUTH_UNKNOWN_MECHANISM = Reply.of(504, "Unrecognized authentication mechanism", "5.5.4")
SHUTTING_DOWN = Reply.of(421, "Server shutting down, try again later", "4.3.2")
START_DATA = Reply.of(354, "End data with <CR><LF>.<CR><LF>")
NEEDS_SMTPUTF8 = Reply.of(553, "Non-ASCII address requires SMTPUTF8", "5.6.7")
HELP = Reply.of(
    214,
    [
        "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
        "See RFC 5321 for their syntax",
    ],
    "2.0.0",
)
NO_ARGUMENTS = "Syntax: {} takes no arguments"
