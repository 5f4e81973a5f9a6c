"""BDAT (RFC 3030)."""

from __future__ import annotations

from collections.abc import Callable

import trio

from .. import hooks as H
from ..protocol import (
    Reply,
    parse_bdat,
    sequencing,
)
from .base import ChunkingState, ClientGone, SessionBase


class Chunking(SessionBase):
    """BDAT (RFC 3030)."""

    __slots__ = ()

    async def _bdat(self, argument: str) -> None:
        conn = self.conn
        size, last = parse_bdat(argument)
        txn = conn.transaction
        refusal = sequencing.refusal("BDAT", self)
        if refusal is None and self._chunking is None:
            assert txn is not None  # the sequencing table saw to it
            self._chunking = ChunkingState()
            decision = await self.runner.run(H.data, conn, txn)
            if self._refuses(decision):
                if decision.verdict.disconnects:
                    self._refuse(decision, H.data.deny, H.data.denysoft)
                self._chunking.refusal = self._refusal(decision, H.data.deny, H.data.denysoft)
        chunking = self._chunking
        if refusal is not None or txn is None or chunking is None:
            await self._read_chunk(size, None)  # the chunk still arrives: consume it
            self.error(refusal or sequencing.MAIL_FIRST)
            return
        limit = self.config.limits.max_message_size
        sink = (
            txn.body.write if chunking.refusal is None and chunking.size + size <= limit else None
        )
        await self._read_chunk(size, sink)
        chunking.size += size
        if chunking.refusal is None and chunking.size > limit:
            decision = await self.runner.run(H.max_data_exceeded, conn, txn)
            chunking.refusal = (
                self._refusal(decision, H.max_data_exceeded.deny, H.max_data_exceeded.denysoft)
                if self._refuses(decision)
                else H.max_data_exceeded.deny
            )
        if not last:
            if chunking.refusal is not None:
                self.reply(chunking.refusal)
            else:
                self.reply(Reply.of(250, f"{size} octets received", "2.0.0"))
            return
        if chunking.refusal is not None:
            self.reply(chunking.refusal)
        else:
            self.reply(await self._queue_message(txn))
        await self._end_transaction()

    async def _read_chunk(self, size: int, sink: Callable[[bytes], None] | None) -> None:
        """Read exactly ``size`` octets following a BDAT command into ``sink`` (or nowhere)."""
        data = self.lines.take()
        limits = self.config.limits
        deadline = trio.current_time() + limits.data_total_timeout
        remaining = size
        while True:
            piece, data = data[:remaining], data[remaining:]
            if sink is not None and piece:
                sink(piece)
            remaining -= len(piece)
            if not remaining:
                break
            data = await self.receive(min(limits.data_timeout, deadline - trio.current_time()))
            if not data:
                raise ClientGone
        self.lines.feed(data)
