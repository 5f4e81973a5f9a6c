"""Plugins' serve tasks: ready before the first client, cancelled after the last connection has
drained, and a failing one stops the server (embedded, and ``tsmtp run`` with exit 1)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from tests.helpers import AcceptAll, MemoryQueue
from tsmtp import Address, Connection, Outcome, Plugin, RcptParams, Server, Verdict, override
from tsmtp.lifecycle import PluginTaskError, PluginTasks, has_serve_task
from tsmtp.log import Level
from tsmtp.testing import SMTPClient, make_plugin, test_config

Request = tuple[str, trio.MemorySendChannel[str]]


class Pool(Plugin):
    """Stands for a connection pool: recipients are checked by asking its serve task."""

    requests: trio.MemorySendChannel[Request] | None = None
    #: Called just before the task says it is ready (the test looks at the server then).
    before_ready: Callable[[], None] | None = None
    #: What the task saw: "ready", then "cancelled with N connections open".
    events: list[str]
    #: Called when the task is cancelled; returns what to record.
    on_cancel: Callable[[], str] | None = None

    @override
    def register(self) -> None:
        self.events = []

    @override
    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        send, receive = trio.open_memory_channel[Request](0)
        if self.before_ready is not None:
            self.before_ready()
        async with receive:
            self.requests = send
            self.events.append("ready")
            task_status.started()
            try:
                async for question, reply in receive:
                    async with reply:
                        await reply.send(question.upper())
            finally:
                self.events.append(self.on_cancel() if self.on_cancel else "cancelled")

    @override
    async def hook_rcpt(
        self, connection: Connection, recipient: Address, params: RcptParams
    ) -> Outcome:
        assert self.requests is not None, "a hook ran before the serve task was ready"
        send, receive = trio.open_memory_channel[str](1)
        await self.requests.send((recipient.local_part, send))
        async with receive:
            answer = await receive.receive()
        return Verdict.OK if answer == "ALICE" else Verdict.DENY("5.1.1 unknown")


class Flaky(Plugin):
    """A serve task that fails when told to, after it was ready."""

    crash: trio.Event

    @override
    def register(self) -> None:
        self.crash = trio.Event()

    @override
    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self.crash.wait()
        raise RuntimeError("pool lost")


class Unready(Plugin):
    """A serve task that fails before it is ready (its database is down, say)."""

    @override
    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        raise ConnectionRefusedError("database down")


class Forgetful(Plugin):
    """A serve task that returns without saying it is ready."""

    @override
    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        return


async def start_transaction(port: int) -> SMTPClient:
    client = await SMTPClient.connect("127.0.0.1", port)
    assert (await client.command("EHLO client.example")).code == 250
    assert (await client.command("MAIL FROM:<s@example.org>")).code == 250
    assert (await client.command("RCPT TO:<alice@example.com>")).code == 250
    return client


async def finish_transaction(client: SMTPClient) -> int:
    assert (await client.command("DATA")).code == 354
    return (await client.command(b"Subject: t\r\n\r\nbody\r\n.")).code


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


# --- ready first, cancelled last --------------------------------------------------------------


async def test_the_serve_task_is_ready_before_the_listeners_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(Level.NOTICE, logger="tsmtp")
    pool = make_plugin(Pool)
    server = Server(test_config(), [pool, MemoryQueue])
    seen: list[object] = []
    pool.before_ready = lambda: seen.extend(
        [list(server.addresses), [m for m in messages(caplog, Level.NOTICE) if "listening" in m]]
    )
    async with trio.open_nursery() as nursery:
        [(_, port)] = await nursery.start(server.serve)
        assert seen == [[], []], "the listeners opened before the serve task was ready"
        client = await start_transaction(port)
        refused = await client.command("RCPT TO:<bob@example.com>")
        assert (refused.code, refused.lines) == (550, ["5.1.1 unknown"])
        assert await finish_transaction(client) == 250
        await client.aclose()
        nursery.cancel_scope.cancel()
    assert len(MemoryQueue.stored) == 1


async def test_the_serve_task_is_cancelled_once_the_connections_have_drained() -> None:
    pool = make_plugin(Pool)
    server = Server(test_config(shutdown_grace=30.0), [pool, MemoryQueue])
    pool.on_cancel = lambda: f"cancelled with {server.active_connections} connections open"
    async with trio.open_nursery() as nursery:
        [(_, port)] = await nursery.start(server.serve)
        client = await start_transaction(port)
        server.shutdown()
        # The transaction goes on, and its hooks still have the pool.
        assert (await client.command("RCPT TO:<alice@example.org>")).code == 250
        await trio.testing.wait_all_tasks_blocked()
        assert pool.events == ["ready"]
        assert await finish_transaction(client) == 250
        assert (await client.read_reply()).code == 421  # and then the session ends
        await client.aclose()
    assert pool.events == ["ready", "cancelled with 0 connections open"]
    assert len(MemoryQueue.stored) == 1


def test_a_plugin_without_serve_gets_no_task() -> None:
    accept, pool = make_plugin(AcceptAll), make_plugin(Pool)
    assert not has_serve_task(accept)
    assert has_serve_task(pool)
    assert PluginTasks([accept, pool, make_plugin(MemoryQueue)]).plugins == [pool]


async def test_the_default_serve_returns_at_once() -> None:
    with trio.fail_after(1):
        await make_plugin(AcceptAll).serve()


async def test_serve_tasks_start_in_plugin_order() -> None:
    order: list[str] = []
    first, second = make_plugin(Pool, name="first"), make_plugin(Pool, name="second")
    first.before_ready = lambda: order.append("first")
    second.before_ready = lambda: order.append(f"second, after first was {first.events}")
    async with trio.open_nursery() as nursery:
        await nursery.start(Server(test_config(), [first, second]).serve)
        nursery.cancel_scope.cancel()
    assert order == ["first", "second, after first was ['ready']"]


# --- a serve task that fails ------------------------------------------------------------------


async def test_a_crash_after_ready_stops_the_server_after_the_open_transaction(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = make_plugin(Flaky)
    server = Server(test_config(), [flaky, AcceptAll, MemoryQueue])
    failures: list[PluginTaskError] = []

    async def serve(task_status: trio.TaskStatus[list[tuple[str, int]]]) -> None:
        try:
            await server.serve(task_status=task_status)
        except PluginTaskError as exc:
            failures.append(exc)

    async with trio.open_nursery() as nursery:
        [(_, port)] = await nursery.start(serve)
        client = await start_transaction(port)
        flaky.crash.set()
        await trio.testing.wait_all_tasks_blocked()
        assert server.stopping
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)  # no new clients
        assert await finish_transaction(client) == 250
        await client.aclose()
    [failure] = failures
    assert str(failure) == "plugin 'flaky': serve task failed after it was ready: " + repr(
        RuntimeError("pool lost")
    )
    assert failure.plugin == "flaky" and failure.started
    assert isinstance(failure.__cause__, RuntimeError)
    assert (
        "[-] [flaky] plugin 'flaky': serve task failed after it was ready: "
        "RuntimeError('pool lost'); stopping the server"
    ) in messages(caplog, Level.CRIT)
    assert len(MemoryQueue.stored) == 1


async def test_a_crash_before_ready_means_the_server_does_not_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(Level.NOTICE, logger="tsmtp")
    pool = make_plugin(Pool)
    server = Server(test_config(), [pool, make_plugin(Unready), make_plugin(Flaky)])
    async with trio.open_nursery() as nursery:
        with pytest.raises(PluginTaskError) as raised:
            await nursery.start(server.serve)
    assert str(raised.value) == (
        "plugin 'unready': serve task failed before it was ready: "
        "ConnectionRefusedError('database down')"
    )
    assert not raised.value.started
    assert pool.events == ["ready", "cancelled"], "the tasks already started are cancelled"
    assert server.addresses == []
    assert not [m for m in messages(caplog, Level.NOTICE) if "listening on" in m]
    assert any(
        m.startswith("[-] [unready] plugin 'unready'") and m.endswith("; the server does not start")
        for m in messages(caplog, Level.CRIT)
    )


async def test_a_serve_task_must_say_it_is_ready() -> None:
    server = Server(test_config(), [make_plugin(Forgetful)])
    async with trio.open_nursery() as nursery:
        forgot = r"returned without calling task_status\.started\(\)"
        with pytest.raises(PluginTaskError, match=forgot):
            await nursery.start(server.serve)


# --- through tsmtp run ------------------------------------------------------------------------

CRASHING = """
import trio

from tsmtp import Plugin, PluginConfig, override


class CrashingConfig(PluginConfig, frozen=True):
    before_ready: bool = False


class Crashing(Plugin):
    config: CrashingConfig

    @override
    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self.config.before_ready:
            raise RuntimeError("cannot connect")
        task_status.started()
        await trio.sleep(0)
        raise RuntimeError("pool lost")
"""


@pytest.mark.parametrize("before_ready", [False, True])
def test_tsmtp_run_exits_1_when_a_serve_task_fails(tmp_path: Path, before_ready: bool) -> None:
    config = tmp_path / "config"
    (config / "site").mkdir(parents=True)
    (config / "site" / "crashing.py").write_text(CRASHING)
    (config / "smtp.toml").write_text('[plugins]\nsearch_path = ["site"]\n')
    (config / "plugins").write_text("crashing\n")
    (config / "crashing.toml").write_text(f"before_ready = {str(before_ready).lower()}\n")
    done = subprocess.run(
        [sys.executable, "-m", "tsmtp", "run", "--config", str(config), "--listen", "127.0.0.1:0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    error = "RuntimeError('cannot connect')" if before_ready else "RuntimeError('pool lost')"
    when = "before" if before_ready else "after"
    problem = f"plugin 'crashing': serve task failed {when} it was ready: {error}"
    assert done.stderr.splitlines()[-1] == f"tsmtp: {problem}; the server stopped"
    assert f"[CRIT] [-] [crashing] {problem}" in done.stderr
    assert ("listening on" in done.stderr) is not before_ready
    assert not (tmp_path / "var" / "tsmtp.pid").exists()
