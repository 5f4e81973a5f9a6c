"""The serve-task example of docs/writing-plugins.md (a per-sender rate limit whose table belongs
to its serve task), taken from the document and run.

As for the guide's other examples (tests/test_docs_example.py also type-checks every example
file), the plugin is imported from the example site written out of the document and its own test
file is run, each test under a ``MockClock`` when it asks for pytest-trio's ``mock_clock``; then
the plugin is loaded by name from a config directory and served by ``tsmtp run``.
"""

from __future__ import annotations

import functools
import smtplib
import sys
from pathlib import Path
from types import ModuleType

import pytest
import trio
from trio.testing import MockClock

from tests.test_docs_example import FILES, import_file, write_site
from tests.test_nodes import Master

PLUGIN = "plugins/sender_rate.py"
TESTS = "tests/test_sender_rate.py"


def test_the_document_has_the_example() -> None:
    assert {PLUGIN, TESTS, "config/sender_rate.toml"} <= set(FILES)


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The document's plugin module, importable as ``plugins.sender_rate`` like in its tests."""
    write_site(tmp_path)
    module = import_file(tmp_path / PLUGIN, "docs_example_sender_rate", monkeypatch)
    monkeypatch.setitem(sys.modules, "plugins.sender_rate", module)
    return module


def test_the_documents_timer_test_needs_the_timer(
    example: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without pruning, the document's timer test fails: it tests what it says."""
    tests = import_file(tmp_path / TESTS, "docs_example_test_sender_rate", monkeypatch)
    monkeypatch.setattr(example.SenderTable, "prune", lambda self, now: 0)
    clock = MockClock()
    test = tests.test_the_timer_forgets_senders_whose_window_has_passed
    with pytest.raises(ExceptionGroup) as raised:  # from the test's nursery
        trio.run(functools.partial(test, mock_clock=clock), clock=clock)
    assert raised.group_contains(AssertionError)


def test_the_plugin_runs_loaded_by_name(tmp_path: Path) -> None:
    config = write_site(tmp_path)
    (config / "plugins").write_text("sender_rate\nrcpt_to.in_host_list\nqueue.maildir\n")
    (config / "sender_rate.toml").write_text("max_messages = 2\n")
    server = Master(tmp_path, config)
    try:
        port = int(server.wait_for(r"listening on 127\.0\.0\.1:(\d+)")[1])
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            for n in range(2):
                client.sendmail("bob@example.org", ["al@example.com"], f"Subject: {n}\r\n\r\n")
            assert client.mail("Bob@Example.org") == (
                450,
                b"4.7.1 Too many messages from this sender, try again later",
            )
            client.rset()
            assert client.mail("carol@example.org")[0] == 250
        server.proc.terminate()
        assert server.proc.wait(timeout=30) == 0
    finally:
        server.close()
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 2
