"""The command-sequencing table, without sockets: which command is refused in which state, and
what RSET, HELO/EHLO and STARTTLS reset."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from tsmtp.protocol import sequencing
from tsmtp.protocol.sequencing import RESETS, Reset, SessionFacts, refusal


@dataclasses.dataclass(frozen=True)
class Facts:
    greeting_refused: bool = False
    greeted: bool = True
    in_transaction: bool = False
    has_recipients: bool = False
    chunking: bool = False
    tls_active: bool = False
    tls_missing: bool = False
    authenticated: bool = False
    auth_missing: bool = False


READY = Facts()
IN_MAIL = Facts(in_transaction=True)
WITH_RCPT = Facts(in_transaction=True, has_recipients=True)


@pytest.mark.parametrize(
    ("verb", "facts", "expected"),
    [
        ("MAIL", Facts(greeted=False), sequencing.HELO_FIRST),
        ("MAIL", IN_MAIL, sequencing.NESTED_MAIL),
        ("MAIL", Facts(tls_missing=True), sequencing.STARTTLS_FIRST),
        ("MAIL", Facts(auth_missing=True), sequencing.AUTH_FIRST),
        # checked in order: greeting before TLS before AUTH
        ("MAIL", Facts(greeted=False, tls_missing=True), sequencing.HELO_FIRST),
        ("MAIL", Facts(tls_missing=True, auth_missing=True), sequencing.STARTTLS_FIRST),
        ("MAIL", READY, None),
        ("RCPT", READY, sequencing.MAIL_FIRST),
        ("RCPT", IN_MAIL, None),
        ("DATA", READY, sequencing.MAIL_FIRST),
        ("DATA", IN_MAIL, sequencing.NO_RECIPIENTS),
        ("DATA", dataclasses.replace(WITH_RCPT, chunking=True), sequencing.DATA_AFTER_BDAT),
        ("DATA", WITH_RCPT, None),
        ("BDAT", READY, sequencing.MAIL_FIRST),
        ("BDAT", IN_MAIL, sequencing.NO_RECIPIENTS),
        ("BDAT", dataclasses.replace(WITH_RCPT, chunking=True), None),
        ("STARTTLS", Facts(tls_active=True), sequencing.TLS_ALREADY),
        ("STARTTLS", READY, None),
        ("AUTH", Facts(authenticated=True), sequencing.ALREADY_AUTHENTICATED),
        ("AUTH", IN_MAIL, sequencing.AUTH_IN_TRANSACTION),
        ("AUTH", READY, None),
    ],
)
def test_rules(verb: str, facts: Facts, expected: object) -> None:
    assert refusal(verb, facts) == expected


def test_the_session_provides_every_fact() -> None:
    from tsmtp.session import Session

    for field in dataclasses.fields(Facts):
        assert isinstance(getattr(Session, field.name), property), field.name
    _: type[SessionFacts] = Facts


ALL_FACTS = [
    Facts(*values)
    for values in itertools.product([False, True], repeat=len(dataclasses.fields(Facts)))
]


@pytest.mark.parametrize("verb", ["QUIT", "NOOP", "RSET", "HELO", "EHLO", "VRFY", "HELP", "XYZZY"])
def test_commands_without_rules_are_refused_only_after_a_refused_greeting(verb: str) -> None:
    for facts in ALL_FACTS:
        refused = facts.greeting_refused and verb != "QUIT"
        expected = sequencing.BAD_SEQUENCE_GREETING if refused else None
        assert refusal(verb, facts) == expected, facts


def test_after_a_refused_greeting_only_quit_is_allowed() -> None:
    for verb, facts in itertools.product(sequencing.RULES, ALL_FACTS):
        if facts.greeting_refused:
            assert refusal(verb, facts) == sequencing.BAD_SEQUENCE_GREETING
    assert refusal("QUIT", Facts(greeting_refused=True)) is None


def test_every_sequence_refusal_is_a_5xx_with_an_enhanced_code() -> None:
    for rules in sequencing.RULES.values():
        for fact, _, reply in rules:
            assert fact in {f.name for f in dataclasses.fields(Facts)}
            assert reply.code // 100 == 5 and reply.enhanced is not None


def test_what_each_command_resets() -> None:
    assert RESETS == {
        "RSET": Reset.TRANSACTION,
        "HELO": Reset.TRANSACTION,
        "EHLO": Reset.TRANSACTION,
        "STARTTLS": Reset.TRANSACTION | Reset.GREETING | Reset.AUTH,
    }
