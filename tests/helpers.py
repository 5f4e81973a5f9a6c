"""Small plugins and helpers shared by the tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import trio

from tsmtp import Connection, Outcome, Plugin, Transaction, Verdict, override
from tsmtp.testing import AcceptAll

__all__ = ["AcceptAll", "MemoryQueue", "body_after_received", "wait_for"]


class MemoryQueue(Plugin):
    """Keep each queued message (as stored) with its envelope, in a class-level list."""

    stored: ClassVar[list[tuple[str, list[str], bytes]]] = []

    @override
    async def hook_queue(self, connection: Connection, transaction: Transaction) -> Outcome:
        txn = connection.transaction
        assert txn is not None
        message = b"".join(txn.message_chunks())
        self.stored.append((txn.sender.address, [str(r) for r in txn.recipients], message))
        return Verdict.OK


def body_after_received(message: bytes) -> bytes:
    """The message without the Received header the server added at the top."""
    assert message.startswith(b"Received: ")
    lines = message.split(b"\r\n")
    i = 1
    while lines[i].startswith((b"\t", b" ")):
        i += 1
    return b"\r\n".join(lines[i:])


async def wait_for(condition: Callable[[], bool], seconds: float = 5) -> None:
    """Wait until ``condition()`` holds (state of the server under test), at most ``seconds``."""
    with trio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 (nothing to wait on but the server's state)
            await trio.sleep(0.005)
