"""The HELO check example of docs/writing-plugins.md, taken from the document and run.

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
from tsmtp.testing import running_server

PLUGIN = "plugins/helo_check.py"
TESTS = "tests/test_helo_check.py"


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
    """The document's plugin module, importable as ``plugins.helo_check`` like in its tests."""
    write_site(tmp_path)
    module = import_file(tmp_path / PLUGIN, "docs_example_helo_check", monkeypatch)
    monkeypatch.setitem(sys.modules, "plugins.helo_check", module)
    return module


@pytest.mark.parametrize("name", DOC_TESTS)
async def test_the_documents_tests_pass(
    name: str, example: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tests = import_file(tmp_path / TESTS, "docs_example_test_helo_check", monkeypatch)
    result = getattr(tests, name)()
    if result is not None:
        await result


async def test_the_plugin_runs_loaded_by_name(tmp_path: Path) -> None:
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
