"""A rcpt hook may accept a recipient and put other addresses in its place (aliases, plus
addressing); the envelope, the recipient limit and DSN's original recipient follow."""

from __future__ import annotations

from typing import ClassVar

import pytest

from tsmtp import Address, Connection, Outcome, Plugin, RcptParams, Transaction, Verdict, override
from tsmtp.config import Limits
from tsmtp.testing import running_server, test_config

ALICE = Address("alice", "example.com")
BOB = Address("bob", "example.com")


class Aliases(Plugin):
    """team@ is alice and bob; user+tag@ is user@; junk@ answers a value that is not an address."""

    @override
    async def hook_rcpt(
        self, connection: Connection, recipient: Address, params: RcptParams
    ) -> Outcome:
        if recipient.local_part == "team":
            return Verdict.OK(value=[ALICE, BOB])
        if "+" in recipient.local_part:
            user = recipient.local_part.split("+", 1)[0]
            return Verdict.OK(value=Address(user, recipient.domain))
        if recipient.local_part == "junk":
            return Verdict.OK(value="alice@example.com")
        return Verdict.OK


class Envelopes(Plugin):
    """Keeps each queued transaction's recipients: (address, original) pairs."""

    stored: ClassVar[list[list[tuple[str, str | None]]]] = []

    @override
    async def hook_queue(self, connection: Connection, transaction: Transaction) -> Outcome:
        txn = connection.transaction
        assert txn is not None
        self.stored.append(
            [
                (r.address.address, r.original.address if r.original else None)
                for r in txn.recipients
            ]
        )
        return Verdict.OK


@pytest.fixture(autouse=True)
def _clear() -> None:
    Envelopes.stored = []


async def test_an_alias_expands_and_the_original_is_kept() -> None:
    async with running_server([Aliases, Envelopes]) as srv:
        c = await srv.connect()
        await c.command("EHLO client.test")
        reply = await c.send_message(
            "a@client.test", ["team@example.com", "carol+news@example.com"], "Subject: x\r\n\r\nx"
        )
        assert reply.code == 250
    assert Envelopes.stored == [
        [
            ("alice@example.com", "team@example.com"),
            ("bob@example.com", "team@example.com"),
            ("carol@example.com", "carol+news@example.com"),
        ]
    ]


async def test_addresses_already_in_the_envelope_are_not_added_twice() -> None:
    async with running_server([Aliases, Envelopes]) as srv:
        c = await srv.connect()
        await c.command("EHLO client.test")
        recipients = ["alice@example.com", "team@example.com", "alice+x@example.com"]
        assert (await c.send_message("a@client.test", recipients, "x")).code == 250
    assert Envelopes.stored == [
        [("alice@example.com", None), ("bob@example.com", "team@example.com")]
    ]


async def test_the_recipient_limit_counts_the_rewritten_addresses() -> None:
    config = test_config(limits=Limits(max_recipients=2))
    async with running_server([Aliases, Envelopes], config=config) as srv:
        c = await srv.connect()
        await c.command("EHLO client.test")
        await c.command("MAIL FROM:<a@client.test>")
        assert (await c.command("RCPT TO:<carol@example.com>")).code == 250
        refused = await c.command("RCPT TO:<team@example.com>")
        assert refused.code == 452 and "4.5.3" in refused.text
        assert (await c.command("RCPT TO:<dave@example.com>")).code == 250


async def test_a_rewrite_that_is_not_an_address_is_a_plugin_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_server([Aliases, Envelopes]) as srv:
        c = await srv.connect()
        await c.command("EHLO client.test")
        await c.command("MAIL FROM:<a@client.test>")
        assert (await c.command("RCPT TO:<junk@example.com>")).code == 450
    assert any(
        "aliases" in r.getMessage() and "value of type str" in r.getMessage()
        for r in caplog.records
    )
