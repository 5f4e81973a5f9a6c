"""The example of docs/writing-plugins.md, taken from the document itself and run.

Every fenced block preceded by ``<!-- file: PATH -->`` is one file of the example site. Here the
plugin is loaded the way the server loads it (from a config directory, through the search path),
served on a real socket, called with ``call_hook``, type-checked with mypy, and the document's own
test file is run, so the documentation cannot drift away from the code.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.test_typing import mypy_cache, run_mypy
from tsmtp import Address, MailParams, Plugin, Server, Verdict, hooks
from tsmtp.testing import SMTPClient, call_hook, make_connection, make_plugin, running_server

DOC = Path(__file__).resolve().parent.parent / "docs" / "writing-plugins.md"
_BLOCK = re.compile(r"^<!-- file: (?P<path>\S+) -->\n```[a-z]*\n(?P<body>.*?)^```$", re.M | re.S)


def doc_files() -> dict[str, str]:
    """The example files of the document: path -> content."""
    return {m["path"]: m["body"] for m in _BLOCK.finditer(DOC.read_text("utf-8"))}


FILES = doc_files()
PLUGIN = "plugins/rcpt_limit.py"
TESTS = "tests/test_rcpt_limit.py"


def test_the_document_has_the_example() -> None:
    assert set(FILES) >= {
        "plugins/no_null_sender.py",
        PLUGIN,
        "config/rcpt_limit.toml",
        "config/plugins",
        TESTS,
    }


def write_site(root: Path) -> Path:
    """Write the example files under ``root``; returns the config directory."""
    for path, text in FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    (root / "plugins" / "__init__.py").write_text("")
    config = root / "config"
    (config / "smtp.toml").write_text(
        'hostname = "mx.example"\n[plugins]\nsearch_path = ["../plugins"]\n'
    )
    (config / "host_list").write_text("example.com\n")
    (config / "queue.maildir.toml").write_text(f"path = {str(root / 'mail')!r}\n")
    return config


def import_file(path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The document's plugin module, importable as ``plugins.rcpt_limit`` like in its tests."""
    write_site(tmp_path)
    module = import_file(tmp_path / PLUGIN, "docs_example_rcpt_limit", monkeypatch)
    monkeypatch.setitem(sys.modules, "plugins.rcpt_limit", module)
    return module


def plugin_class(module: ModuleType, name: str) -> type[Plugin]:
    cls = getattr(module, name)
    assert isinstance(cls, type) and issubclass(cls, Plugin)
    return cls


# --- call_hook, without a socket ------------------------------------------------------------


async def test_call_hook_counts_per_connection(example: ModuleType) -> None:
    config = example.RcptLimitConfig(max_recipients=2, exempt_relaying=False)
    plugin = make_plugin(plugin_class(example, "RcptLimit"), name="rcpt_limit", config=config)
    first, second = make_connection(), make_connection("192.0.2.2")
    alice = Address("alice", "example.com")
    verdicts = [(await call_hook(plugin, hooks.rcpt_ok, first, alice)).verdict for _ in range(3)]
    assert verdicts == [Verdict.CONT, Verdict.CONT, Verdict.DENYSOFT]
    assert first.notes[example.ACCEPTED] == 2
    assert (await call_hook(plugin, hooks.rcpt_ok, second, alice)).verdict is Verdict.CONT
    first.relaying = True
    refused = await call_hook(plugin, hooks.rcpt_ok, first, alice)
    assert refused.verdict is Verdict.DENYSOFT, "exempt_relaying = false limits relaying clients"
    assert refused.message == ("4.5.3 Too many recipients for one connection",)
    assert refused.code == 452


def test_the_config_is_checked(example: ModuleType) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        example.RcptLimitConfig(max_recipients=0)


# --- loaded from a config directory and served ----------------------------------------------


async def test_the_example_site_runs(tmp_path: Path) -> None:
    config_dir = write_site(tmp_path)
    loaded = Server.from_config_dir(config_dir, listen=["127.0.0.1:0"])
    names = [p.name for p in loaded.plugins]
    assert names == ["relay_acl", "rcpt_limit", "rcpt_to.in_host_list", "queue.maildir"]
    limiter = loaded.plugins[1]
    assert type(limiter).__name__ == "RcptLimit"
    assert getattr(limiter.config, "max_recipients", None) == 50, "read from rcpt_limit.toml"
    assert limiter.config.timeout == 5

    async with running_server(loaded.plugins, config=loaded.config) as srv:
        client = await SMTPClient.connect(srv.host, srv.port)
        assert client.greeting.code == 220
        assert (await client.command("EHLO client.example")).code == 250
        assert (await client.command("MAIL FROM:<bob@example.org>")).code == 250
        for n in range(30):
            assert (await client.command(f"RCPT TO:<user{n}@example.com>")).code == 250
        stranger = await client.command("RCPT TO:<someone@elsewhere.example>")
        assert stranger.code == 550
        assert "I cannot deliver for that user" in stranger.text
        assert (await client.command("DATA")).code == 354
        await client.send(b"Subject: hello\r\n\r\nHello.\r\n.\r\n")
        assert (await client.read_reply()).code == 250

        assert (await client.command("MAIL FROM:<bob@example.org>")).code == 250
        for n in range(30, 50):
            assert (await client.command(f"RCPT TO:<user{n}@example.com>")).code == 250
        over = await client.command("RCPT TO:<user50@example.com>")
        assert (over.code, over.lines) == (452, ["4.5.3 Too many recipients for one connection"])
        assert (await client.command("QUIT")).code == 221
        await client.aclose()

    stored = list((tmp_path / "mail" / "new").iterdir())
    assert len(stored) == 1
    assert stored[0].read_bytes().endswith(b"Subject: hello\r\n\r\nHello.\r\n")


async def test_the_first_plugin_refuses_bounces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_site(tmp_path)
    path = tmp_path / "plugins" / "no_null_sender.py"
    plugin = make_plugin(
        plugin_class(import_file(path, "docs_example_no_null", monkeypatch), "NoNullSender")
    )
    bounce = await call_hook(plugin, hooks.mail, make_connection(), Address.null(), MailParams())
    assert bounce.verdict is Verdict.DENY
    assert bounce.message == ("5.7.1 This server takes no bounces",)
    sender = Address("bob", "example.org")
    assert (
        await call_hook(plugin, hooks.mail, make_connection(), sender, MailParams())
    ).verdict is (Verdict.CONT)


# --- type-checked as the document tells authors to ------------------------------------------


def test_the_example_type_checks(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    write_site(tmp_path)
    python = sorted(p for p in FILES if p.endswith(".py"))
    messages, output = run_mypy(python, cwd=tmp_path, cache_dir=mypy_cache(tmp_path_factory))
    assert messages == [], output
