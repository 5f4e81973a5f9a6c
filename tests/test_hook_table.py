"""The hook table is the one source of truth: it agrees with the Plugin base class, orders
handlers by priority, and refuses verdicts and values a hook may not return."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import ClassVar

import pytest

from tsmtp import (
    Address,
    Connection,
    Outcome,
    Plugin,
    RcptParams,
    Verdict,
    cli,
    hooks,
    override,
)
from tsmtp.hookspec import Chain
from tsmtp.log import Level
from tsmtp.plugin import HOOK_NAMES
from tsmtp.runner import HookRunner
from tsmtp.testing import call_hook, make_connection, make_plugin, running_server

from .helpers import MemoryQueue


def test_every_hook_method_has_a_spec_and_every_spec_a_method() -> None:
    assert set(hooks.BY_NAME) == HOOK_NAMES
    for name, spec in hooks.BY_NAME.items():
        method = getattr(Plugin, f"hook_{name}")
        assert spec.parameters == tuple(inspect.signature(method).parameters.values())[1:]
        assert spec.takes_connection == (spec.parameters[0].name == "connection")
        assert spec.doc == inspect.getdoc(method)


def test_observer_hooks_run_every_handler_and_two_hooks_always_run() -> None:
    run_all = {name for name, spec in hooks.BY_NAME.items() if spec.chain is Chain.ALL}
    assert run_all == {
        "connect_init",
        "disconnect",
        "capabilities",
        "queue_ok",
        "reset_transaction",
        "delivered",
        "init_master",
        "init_child",
    }
    always = {name for name, spec in hooks.BY_NAME.items() if spec.always_run}
    assert always == {"disconnect", "reset_transaction"}
    assert {n for n, s in hooks.BY_NAME.items() if Verdict.HOOK in s.verdicts} == {
        "unrecognized_command"
    }
    assert {n for n, s in hooks.BY_NAME.items() if Verdict.DELAY in s.verdicts} == {"send_email"}


class Ordered(Plugin):
    """Records the order its handlers ran in; ``order`` is shared by all instances."""

    order: ClassVar[list[str]] = []
    priority: ClassVar[int] = 0

    @override
    def register(self) -> None:
        hooks.rcpt.register(self, self.registered, priority=type(self).priority)

    async def registered(
        self, connection: Connection, recipient: Address, params: RcptParams
    ) -> Outcome:
        self.order.append(f"{self.name}:registered")
        return None

    @override
    async def hook_rcpt(
        self, connection: Connection, recipient: Address, params: RcptParams
    ) -> Outcome:
        self.order.append(f"{self.name}:method")
        return None


class Early(Ordered):
    priority = -50


class Late(Ordered):
    priority = 50


async def test_handlers_run_by_priority_then_plugin_order() -> None:
    Ordered.order = []
    plugins = [
        make_plugin(Late, name="late"),
        make_plugin(Ordered, name="plain"),
        make_plugin(Early, name="early"),
        make_plugin(MemoryQueue),
    ]
    runner = HookRunner(plugins)
    expected = [
        "early:registered",  # priority -50
        "late:method",  # priority 0, in plugin order, registered handlers before methods
        "plain:registered",
        "plain:method",
        "early:method",
        "late:registered",  # priority 50
    ]
    assert [h.plugin.name for h in runner.handlers(hooks.rcpt)] == [
        e.split(":")[0] for e in expected
    ]
    async with running_server(plugins) as srv:
        c = await srv.connect()
        await c.command("EHLO client.test")
        await c.command("MAIL FROM:<a@client.test>")
        await c.command("RCPT TO:<b@example.com>")
    assert Ordered.order == expected


def test_priority_outside_the_range_is_refused() -> None:
    class TooEarly(Ordered):
        priority = -101

    with pytest.raises(Exception, match="priority must be between -100 and 100"):
        make_plugin(TooEarly)


class DelaysHelo(Plugin):
    @override
    async def hook_helo(self, connection: Connection, hostname: str) -> Outcome:
        return Verdict.DELAY(value=5)


class NamesWithANumber(Plugin):
    @override
    async def hook_lookup_rdns(self, connection: Connection) -> Outcome:
        return Verdict.OK(value=42)


async def test_a_verdict_the_hook_may_not_return_fails_that_plugin(
    caplog: pytest.LogCaptureFixture,
) -> None:
    result = await call_hook(make_plugin(DelaysHelo), hooks.helo, make_connection(), "client")
    assert result.verdict is Verdict.DENYSOFT
    [record] = [r for r in caplog.records if r.levelno == Level.ERROR]
    assert "[delayshelo]" in record.getMessage()
    assert "returned DELAY, which helo may not" in record.getMessage()


async def test_a_value_of_the_wrong_type_fails_that_plugin(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugin = make_plugin(NamesWithANumber)
    result = await call_hook(plugin.hook_lookup_rdns, make_connection())
    assert result.verdict is Verdict.DENYSOFT
    [record] = [r for r in caplog.records if r.levelno == Level.ERROR]
    assert "[nameswithanumber]" in record.getMessage()
    assert "value of type int; lookup_rdns needs str" in record.getMessage()


def test_check_hooks_prints_each_hooks_handlers_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "plugins").write_text("relay_acl\nrcpt_to.in_host_list\nqueue.discard\n")
    (tmp_path / "host_list").write_text("example.com\n")
    (tmp_path / "queue.discard.toml").write_text("timeout = 0\n")
    assert cli.main(["check", "--config", str(tmp_path), "--hooks"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(
        "configuration OK; plugins: relay_acl, rcpt_to.in_host_list, queue.discard"
    )
    assert out[1:] == [
        "connect_init:",
        "  1. relay_acl:hook_connect_init (priority 0, timeout 30s)",
        "rcpt:",
        "  1. rcpt_to.in_host_list:hook_rcpt (priority 0, timeout 30s)",
        "queue:",
        "  1. queue.discard:hook_queue (priority 0, timeout none)",
        "queue_outbound:",
        "  1. queue.discard:hook_queue_outbound (priority 0, timeout none)",
    ]


def test_every_hook_has_a_permanent_and_a_temporary_default_refusal() -> None:
    for spec in hooks.BY_NAME.values():
        assert spec.deny.code // 100 == 5 and spec.deny.enhanced is not None, spec
        assert spec.denysoft.code // 100 == 4 and spec.denysoft.enhanced is not None, spec
    assert hooks.connect.deny.code == 554 and hooks.connect.denysoft.code == 421
    assert hooks.auth.deny.code == 535 and hooks.auth.denysoft.code == 454


def test_the_plugin_guide_documents_every_hook_of_the_table() -> None:
    guide = (Path(__file__).parent.parent / "docs" / "writing-plugins.md").read_text()
    rows = re.findall(r"^\| ((?:`[a-z_]+`(?: / )?)+) \|", guide, re.MULTILINE)
    documented = {name for row in rows for name in re.findall(r"`([a-z_]+)`", row)}
    assert documented == set(hooks.BY_NAME)
