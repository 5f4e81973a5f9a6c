"""What a plugin may change on a Connection: relaying, notes, results and, through
set_remote, the client address; the session's bookkeeping is read-only."""

from __future__ import annotations

import pytest

from tsmtp.connection import Peer
from tsmtp.testing import make_connection, make_transaction

READ_ONLY = [
    "uuid",
    "server",
    "remote",
    "local",
    "notes",
    "results",
    "hello",
    "tls",
    "authenticated_user",
    "transaction",
    "transaction_count",
    "closing",
]


@pytest.mark.parametrize("field", READ_ONLY)
def test_the_sessions_bookkeeping_cannot_be_written_by_a_plugin(field: str) -> None:
    connection = make_connection()
    with pytest.raises(AttributeError):
        setattr(connection, field, None)


def test_what_a_plugin_may_change() -> None:
    connection = make_connection("192.0.2.7")
    connection.relaying = True
    assert connection.relaying
    connection.set_remote(Peer("198.51.100.1", 2525, "mx.example.net"))
    assert connection.remote == Peer("198.51.100.1", 2525, "mx.example.net")
    with pytest.raises(AttributeError):
        connection.remote.host = "spoofed.example"  # type: ignore[misc]
    txn = make_transaction(connection, message="Subject: x\r\n\r\nx\r\n")
    assert connection.transaction is txn and connection.transaction_count == 1
