"""Which command may come when (RFC 5321 4.1.4, 3207, 4954, 3030), and what a command resets.

The session keeps the facts (:class:`SessionFacts`); this table says, for each verb, which facts
it needs and the reply when one is missing, in the order they are checked. Whether a command is
*offered* at all (STARTTLS without a certificate, AUTH before TLS) is configuration, not
sequence, and stays with the session.
"""

from __future__ import annotations

import enum
from typing import Protocol

from .replies import Reply


class SessionFacts(Protocol):
    """What the sequencing rules look at."""

    @property
    def greeting_refused(self) -> bool: ...
    @property
    def greeted(self) -> bool:
        """HELO or EHLO was accepted (and not reset since)."""

    @property
    def in_transaction(self) -> bool: ...
    @property
    def has_recipients(self) -> bool: ...
    @property
    def chunking(self) -> bool:
        """A BDAT transfer has started in this transaction."""

    @property
    def tls_active(self) -> bool: ...
    @property
    def tls_missing(self) -> bool:
        """The listener requires STARTTLS and it has not happened."""

    @property
    def authenticated(self) -> bool: ...
    @property
    def auth_missing(self) -> bool:
        """The listener requires AUTH and it has not happened."""


BAD_SEQUENCE_GREETING = Reply.of(
    503, "Bad sequence of commands: this server refused the connection", "5.5.1"
)
HELO_FIRST = Reply.of(503, "Send HELO or EHLO first", "5.5.1")
NESTED_MAIL = Reply.of(503, "Nested MAIL command", "5.5.1")
MAIL_FIRST = Reply.of(503, "Need MAIL command first", "5.5.1")
NO_RECIPIENTS = Reply.of(554, "No valid recipients", "5.5.1")
STARTTLS_FIRST = Reply.of(530, "Must issue a STARTTLS command first", "5.7.0")
AUTH_FIRST = Reply.of(530, "Authentication required", "5.7.0")
TLS_ALREADY = Reply.of(503, "TLS already active", "5.5.1")
ALREADY_AUTHENTICATED = Reply.of(503, "Already authenticated", "5.5.1")
AUTH_IN_TRANSACTION = Reply.of(503, "AUTH is not allowed during a mail transaction", "5.5.1")
DATA_AFTER_BDAT = Reply.of(503, "DATA is not allowed after BDAT", "5.5.1")


#: For each verb: (fact, the value of it that refuses, reply), checked in order.
RULES: dict[str, tuple[tuple[str, bool, Reply], ...]] = {
    "MAIL": (
        ("greeted", False, HELO_FIRST),
        ("in_transaction", True, NESTED_MAIL),
        ("tls_missing", True, STARTTLS_FIRST),
        ("auth_missing", True, AUTH_FIRST),
    ),
    "RCPT": (("in_transaction", False, MAIL_FIRST),),
    "DATA": (
        ("in_transaction", False, MAIL_FIRST),
        ("has_recipients", False, NO_RECIPIENTS),
        ("chunking", True, DATA_AFTER_BDAT),
    ),
    "BDAT": (
        ("in_transaction", False, MAIL_FIRST),
        ("has_recipients", False, NO_RECIPIENTS),
    ),
    "STARTTLS": (("tls_active", True, TLS_ALREADY),),
    "AUTH": (
        ("authenticated", True, ALREADY_AUTHENTICATED),
        ("in_transaction", True, AUTH_IN_TRANSACTION),
    ),
}


def refusal(verb: str, facts: SessionFacts) -> Reply | None:
    """The reply refusing ``verb`` now, or None if the sequence allows it.

    After a refused greeting (554) everything but QUIT is refused (RFC 5321 3.1).
    """
    if facts.greeting_refused:
        return None if verb == "QUIT" else BAD_SEQUENCE_GREETING
    rules = RULES.get(verb)
    if rules is None:
        return None
    for fact, refuses_when, reply in rules:
        if getattr(facts, fact) is refuses_when:
            return reply
    return None


class Reset(enum.Flag):
    """What a command makes the session forget."""

    TRANSACTION = enum.auto()
    """The mail transaction: envelope, body, BDAT state."""
    GREETING = enum.auto()
    """HELO/EHLO: the client must greet again."""
    AUTH = enum.auto()
    """A previous AUTH identity (and the relaying it gave)."""


#: RSET and a new HELO/EHLO end the transaction (RFC 5321 4.1.1.1, 4.1.1.5); after STARTTLS
#: everything learned from the client before TLS is discarded (RFC 3207 4.2).
RESETS: dict[str, Reset] = {
    "RSET": Reset.TRANSACTION,
    "HELO": Reset.TRANSACTION,
    "EHLO": Reset.TRANSACTION,
    "STARTTLS": Reset.TRANSACTION | Reset.GREETING | Reset.AUTH,
}
