"""The header-rewriting example of docs/writing-plugins.md, taken from the document and run.

Like the guide's first complete example (tests/test_docs_example.py, which also type-checks every
example file), the plugin is imported from the example site written out of the document, its
own test file is run, and the plugin is loaded by name from a config directory and served.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.test_docs_example import FILES, import_file, write_site
from tsmtp import Server
from tsmtp.testing import AcceptAll, CaptureQueue, running_server

PLUGIN = "plugins/subject_check.py"
TESTS = "tests/test_subject_check.py"


def test_the_document_has_the_example() -> None:
    assert {PLUGIN, TESTS} <= set(FILES)


DOC_TESTS = [
    node.name
    for node in ast.parse(FILES[TESTS]).body
    if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef) and node.name.startswith("test_")
]


def test_the_document_has_tests() -> None:
    assert len(DOC_TESTS) >= 3


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The document's plugin module, importable as ``plugins.subject_check`` like in its tests."""
    write_site(tmp_path)
    module = import_file(tmp_path / PLUGIN, "docs_example_subject_check", monkeypatch)
    monkeypatch.setitem(sys.modules, "plugins.subject_check", module)
    return module


@pytest.mark.parametrize("name", DOC_TESTS)
async def test_the_documents_tests_pass(
    name: str, example: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tests = import_file(tmp_path / TESTS, "docs_example_test_subject_check", monkeypatch)
    result = getattr(tests, name)()
    if result is not None:
        await result


async def test_the_plugin_runs_loaded_by_name(tmp_path: Path) -> None:
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
