"""Every example of docs/writing-plugins.md that comes with its tests: the document's own test
file is run against the document's plugin, each test under a ``MockClock`` when it asks for
pytest-trio's ``mock_clock``.

An example is a pair ``plugins/NAME.py`` + ``tests/test_NAME.py`` of the document's files
(tests/test_docs_example.py writes them out and type-checks them all); the plugin is importable
as ``plugins.NAME``, as the document's tests import it.
"""

from __future__ import annotations

import ast
import functools
import inspect
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from tests.test_docs_example import FILES, import_file, write_site
from tsmtp import Server
from tsmtp.testing import AcceptAll, CaptureQueue, running_server

EXAMPLES = sorted(
    path.removeprefix("plugins/").removesuffix(".py")
    for path in FILES
    if path.startswith("plugins/") and f"tests/test_{Path(path).stem}.py" in FILES
)
CASES = [
    (name, node.name)
    for name in EXAMPLES
    for node in ast.parse(FILES[f"tests/test_{name}.py"]).body
    if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef) and node.name.startswith("test_")
]


def test_the_document_has_its_examples_with_tests() -> None:
    assert {"rcpt_limit", "subject_check", "helo_check", "sender_rate"} <= set(EXAMPLES)
    for name in EXAMPLES:
        assert sum(1 for example, _ in CASES if example == name) >= 2, name


def run_documented_test(
    example: str, test_name: str, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run one test of the document's ``tests/test_<example>.py`` on a fresh Trio loop."""
    write_site(root)
    plugin = import_file(root / "plugins" / f"{example}.py", f"docs_{example}", monkeypatch)
    monkeypatch.setitem(sys.modules, f"plugins.{example}", plugin)
    tests = import_file(root / "tests" / f"test_{example}.py", f"docs_test_{example}", monkeypatch)
    test: Callable[..., Awaitable[None]] = getattr(tests, test_name)
    if "mock_clock" in inspect.signature(test).parameters:
        clock = MockClock()
        trio.run(functools.partial(test, mock_clock=clock), clock=clock)
    else:
        trio.run(test)


@pytest.mark.parametrize(("example", "test_name"), CASES)
def test_the_documents_tests_pass(
    example: str, test_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_documented_test(example, test_name, tmp_path, monkeypatch)


async def test_subject_check_runs_loaded_by_name(tmp_path: Path) -> None:
    config = write_site(tmp_path)
    (config / "plugins").write_text("subject_check\n")
    (config / "subject_check.toml").write_text('shouting_words = 1\nremove = "X-Secret"\n')
    loaded = Server.from_config_dir(config, listen=["127.0.0.1:0"])
    (plugin,) = loaded.plugins
    assert (plugin.name, type(plugin).__name__) == ("subject_check", "SubjectCheck")
    message = b"Subject: URGENT news\r\nX-Secret: 1\r\nX-Internal-Route: kept\r\n\r\nbody\r\n"
    async with running_server([AcceptAll, plugin, CaptureQueue], config=loaded.config) as srv:
        client = await srv.connect()
        assert (await client.command("EHLO client.example")).code == 250
        reply = await client.send_message("bob@example.org", ["al@example.com"], message)
        assert reply.code == 250
        (stored,) = srv.plugin(CaptureQueue).messages
    assert stored.data.endswith(
        b"Subject: URGENT news\r\nX-Internal-Route: kept\r\nX-Subject-Shouting: yes\r\n\r\nbody\r\n"
    )


async def test_helo_check_runs_loaded_by_name(tmp_path: Path) -> None:
    config = write_site(tmp_path)
    (config / "plugins").write_text("helo_check\n")
    (config / "helo_check.toml").write_text("reject = true\n")
    loaded = Server.from_config_dir(config, listen=["127.0.0.1:0"])
    (plugin,) = loaded.plugins
    assert (plugin.name, type(plugin).__name__) == ("helo_check", "HeloCheck")
    async with running_server([plugin], config=loaded.config) as srv:
        client = await srv.connect()
        refused = await client.command("HELO nodots")
        assert refused.code == 550 and "fully qualified" in refused.text
        assert (await client.command("HELO mail.example.org")).code == 250
