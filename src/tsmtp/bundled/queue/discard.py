"""Accept every message and throw it away (for tests and benchmarks, never for real mail)."""

from __future__ import annotations

from tsmtp import Connection, Outcome, Plugin, Transaction, Verdict, override


class Discard(Plugin):
    @override
    async def hook_queue(self, connection: Connection, transaction: Transaction) -> Outcome:
        return Verdict.OK

    @override
    async def hook_queue_outbound(
        self, connection: Connection, transaction: Transaction
    ) -> Outcome:
        return Verdict.OK
