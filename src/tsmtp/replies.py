"""The default reply for every command and hook outcome (the replies for commands out of
sequence live with their rules, in protocol.sequencing)."""

from __future__ import annotations

from .protocol import Reply

# (code, enhanced status, text): refusals default to these unless the plugin gave its own text.
CONNECT_DENY = Reply.of(554, "Your mail is not welcome here", "5.7.1")
CONNECT_DENYSOFT = Reply.of(421, "Come back later", "4.7.0")
RDNS_DENY = Reply.of(554, "rDNS lookup failed", "5.7.1")
RDNS_DENYSOFT = Reply.of(421, "rDNS temporary failure", "4.7.0")
HELO_DENY = Reply.of(550, "HELO denied", "5.7.1")
HELO_DENYSOFT = Reply.of(450, "HELO denied, try again later", "4.7.1")
MAIL_DENYSOFT_TEXT = "sender {} denied, try again later"
RCPT_DENYSOFT_TEXT = "recipient {} denied, try again later"
DATA_DENY = Reply.of(554, "Message denied", "5.7.1")
DATA_DENYSOFT = Reply.of(451, "Message denied, try again later", "4.7.1")
DATA_POST_DENY = Reply.of(550, "Message denied", "5.7.1")
DATA_POST_DENYSOFT = Reply.of(450, "Message denied temporarily", "4.7.1")
QUEUE_DENY = Reply.of(550, "Message refused", "5.3.0")
QUEUE_DENYSOFT = Reply.of(451, "Message not queued, try again later", "4.3.0")
QUEUE_DECLINED = Reply.of(451, "Queuing declined or disabled, try later", "4.3.0")
TOO_BIG = Reply.of(552, "Message size exceeds fixed maximum message size", "5.3.4")
TOO_BIG_SOFT = Reply.of(452, "Message too big for now, try again later", "4.3.1")
BARE_ENDINGS = Reply.of(
    550, "Message refused: bare CR or LF in data; lines must end with CRLF", "5.6.0"
)
LONG_LINE = Reply.of(554, "Message refused: a line is longer than 1000 octets", "5.6.0")
VRFY_DENY = Reply.of(550, "Access denied", "5.7.1")
VRFY_DENYSOFT = Reply.of(450, "Lookup failed, try again later", "4.7.1")
VRFY_DEFAULT = Reply.of(
    252, "Cannot VRFY user, but will accept message and attempt delivery", "2.0.0"
)
RSET_DENY = Reply.of(550, "RSET denied", "5.7.1")
RSET_DENYSOFT = Reply.of(421, "RSET denied, closing connection", "4.7.0")
NOOP_DENY = Reply.of(500, "Stop wasting my time", "5.5.1")
NOOP_DENYSOFT = Reply.of(450, "Stop wasting my time", "4.5.1")
UNRECOGNIZED = Reply.of(500, "Unrecognized command", "5.5.1")
UNRECOGNIZED_SOFT = Reply.of(450, "Command refused, try again later", "4.5.1")
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
AUTH_FAILED = Reply.of(535, "Authentication credentials invalid", "5.7.8")
AUTH_TEMPFAIL = Reply.of(454, "Temporary authentication failure", "4.7.0")
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
