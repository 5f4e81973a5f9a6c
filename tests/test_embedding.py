"""Embedding: the README's program, taken from the README and run, and the ways ``Server`` takes
its plugins (classes, PluginSpec by class or by name, plugins already made), one shared context."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest
import trio

import tsmtp
from tests.helpers import AcceptAll
from tests.test_typing import mypy_cache, run_mypy
from tsmtp import (
    ConfigError,
    Listener,
    Outcome,
    Plugin,
    PluginConfig,
    PluginSpec,
    Server,
    ServerConfig,
    override,
)
from tsmtp.testing import SMTPClient, make_plugin, test_config

README = Path(__file__).resolve().parent.parent / "README.md"
_SECTION = re.compile(r"^## Embedding\n(?P<section>.*?)(?=^## )", re.M | re.S)
_PYTHON = re.compile(r"^```python\n(?P<code>.*?)^```$", re.M | re.S)


def readme_program() -> str:
    section = _SECTION.search(README.read_text("utf-8"))
    assert section is not None, "README.md has no '## Embedding' section"
    block = _PYTHON.search(section["section"])
    assert block is not None, "the Embedding section has no python block"
    return block["code"]


def test_the_readme_program_runs_and_stores_its_message(tmp_path: Path) -> None:
    (tmp_path / "embed.py").write_text(readme_program())
    done = subprocess.run(
        [sys.executable, "embed.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    [stored] = (tmp_path / "mail" / "new").iterdir()
    message = stored.read_bytes()
    assert b"by mx.example.com (tsmtp)" in message
    assert b"for <bob@example.com>" in message
    assert message.endswith(b"Subject: hi\r\n\r\nHello.\r\n")


def test_the_readme_program_type_checks(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    (tmp_path / "embed.py").write_text(readme_program())
    messages, output = run_mypy(["embed.py"], cwd=tmp_path, cache_dir=mypy_cache(tmp_path_factory))
    assert messages == [], output


def test_the_public_api_has_what_embedding_needs() -> None:
    for name in ("Server", "ServerConfig", "Listener", "Limits", "TLSSettings", "PluginSpec"):
        assert name in tsmtp.__all__
        assert getattr(tsmtp, name).__module__.startswith("tsmtp.")


# --- how Server takes its plugins -------------------------------------------------------------


class TagConfig(PluginConfig, frozen=True):
    tag: str = "plain"


class Tag(Plugin):
    """Writes its tag and the shared context into the server notes at init_master."""

    config: TagConfig

    @override
    async def hook_init_master(self, server: tsmtp.ServerContext) -> Outcome:
        server.notes[f"{self.name}.tag"] = self.config.tag
        server.notes[f"{self.name}.same_context"] = server is self.server
        return None


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[int]:
    """Serve ``server`` for the block, which gets its port; shut it down gracefully after."""
    async with trio.open_nursery() as nursery:
        [(_, port)] = await nursery.start(server.serve)
        try:
            yield port
        finally:
            server.shutdown()


def build(*plugins: Plugin | type[Plugin] | PluginSpec, config_dir: Path | None = None) -> Server:
    return Server(test_config(), plugins, config_dir=config_dir)


def test_classes_and_specs_are_created_named_configured_and_share_the_context() -> None:
    made = make_plugin(Tag, name="premade", config=TagConfig(tag="made"))
    server = build(
        Tag,
        PluginSpec(Tag, name="typed", config=TagConfig(tag="typed")),
        PluginSpec(Tag, name="mapped", config={"tag": "mapped"}),
        made,
    )
    assert [p.name for p in server.plugins] == ["tag", "typed", "mapped", "premade"]
    assert [getattr(p.config, "tag", None) for p in server.plugins] == [
        "plain",
        "typed",
        "mapped",
        "made",
    ]
    assert all(p.server is server.context for p in server.plugins)
    assert server.plugins[3] is made


async def test_every_plugin_sees_the_server_context_while_serving() -> None:
    server = build(Tag, PluginSpec(Tag, name="other", config={"tag": "x"}), AcceptAll)
    async with serving(server) as port:
        client = await SMTPClient.connect("127.0.0.1", port)
        assert (await client.command("EHLO me")).code == 250
        await client.aclose()
    notes = server.context.notes
    assert (notes["tag.tag"], notes["other.tag"]) == ("plain", "x")
    assert notes["tag.same_context"] is True and notes["other.same_context"] is True


async def test_a_bundled_plugin_by_name(tmp_path: Path) -> None:
    server = build(AcceptAll, PluginSpec("queue.maildir", config={"path": str(tmp_path / "mail")}))
    assert [type(p).__name__ for p in server.plugins] == ["AcceptAll", "Maildir"]
    assert server.plugins[1].name == "queue.maildir"
    async with serving(server) as port:
        client = await SMTPClient.connect("127.0.0.1", port)
        assert (await client.command("EHLO me")).code == 250
        reply = await client.send_message("a@example.org", ["b@example.com"], b"Subject: x\r\n\r\n")
        assert reply.code == 250
        await client.aclose()
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 1


def test_without_config_a_spec_reads_its_toml_from_the_config_dir(tmp_path: Path) -> None:
    (tmp_path / "tag.toml").write_text('tag = "from file"\n')
    server = build(Tag, config_dir=tmp_path)
    assert getattr(server.plugins[0].config, "tag", None) == "from file"
    assert server.plugins[0].config_dir == tmp_path


@pytest.mark.parametrize(
    ("plugins", "error"),
    [
        ((Tag, Tag), "plugin 'tag' is given twice"),
        ((PluginSpec(Tag, config={"tag": 1}),), "plugin 'tag': config: tag: Expected `str`"),
        ((PluginSpec(Tag, config={"nope": 1}),), "unknown field `nope`"),
        (
            (PluginSpec(Tag, config=PluginConfig()),),
            "config is a PluginConfig, expected a TagConfig",
        ),
        ((Tag(),), "Tag was created but not configured"),
        ((PluginSpec("no.such.plugin"),), "plugin 'no.such.plugin' not found"),
    ],
)
def test_plugins_given_wrongly_are_refused_clearly(
    plugins: tuple[Plugin | type[Plugin] | PluginSpec, ...], error: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)):
        build(*plugins)


def test_a_context_of_another_config_is_refused() -> None:
    with pytest.raises(ValueError, match="context"):
        Server(test_config(), [], context=tsmtp.ServerContext(test_config()))


def test_a_server_config_in_code_is_checked_like_smtp_toml() -> None:
    with pytest.raises(ValueError, match="hostname"):
        ServerConfig(hostname="mx.example\r\nX-Injected: 1")
    with pytest.raises(ValueError, match="HOST:PORT"):
        Listener(address="nowhere")
    with pytest.raises(ValueError, match="greeting"):
        msgspec.structs.replace(test_config(), greeting="hi\r\n250 fake")
