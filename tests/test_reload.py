"""Reload: new connections get the new configuration and plugins, open ones finish on the old,
whose serve tasks end once those connections have; a configuration that fails keeps the old one;
``tsmtp reload`` finds the server by its pid file."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.helpers import AcceptAll, MemoryQueue
from tests.test_nodes import Master
from tests.test_serve import Pool, finish_transaction, messages, start_transaction
from tsmtp import Plugin, Server
from tsmtp.log import Level
from tsmtp.pidfile import PidFile, PidFileError, running_server_pid
from tsmtp.testing import SMTPClient, make_plugin, test_config

REPO = Path(__file__).resolve().parent.parent

TAGGED = """
import trio

from tsmtp import Connection, Outcome, Plugin, PluginConfig, Verdict, override


class TaggedConfig(PluginConfig, frozen=True):
    tag: str = "one"
    fail_to_start: bool = False


class Tagged(Plugin):
    config: TaggedConfig

    @override
    def register(self) -> None:
        self.events: list[str] = []
        self.stopped = trio.Event()

    @override
    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self.config.fail_to_start:
            raise RuntimeError(f"{self.config.tag}: cannot start")
        self.events.append("ready")
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            self.events.append("cancelled")
            self.stopped.set()

    @override
    async def hook_vrfy(self, connection: Connection, argument: str) -> Outcome:
        return Verdict.OK(f"tag {self.config.tag}")
"""

SMTP_TOML = """\
hostname = "mx.example"
greeting = "{greeting}"
[[listen]]
address = "{address}"
[plugins]
search_path = ["site"]
"""


def write_site(root: Path, *, greeting: str = "first", tag: str = "one") -> Path:
    config = root / "config"
    (config / "site").mkdir(parents=True, exist_ok=True)
    (config / "site" / "tagged.py").write_text(TAGGED)
    (config / "smtp.toml").write_text(SMTP_TOML.format(greeting=greeting, address="127.0.0.1:0"))
    (config / "tagged.toml").write_text(f'tag = "{tag}"\n')
    (config / "host_list").write_text("example.com\n")
    (config / "queue.maildir.toml").write_text(f"path = {str(root / 'mail')!r}\nfsync = false\n")
    (config / "plugins").write_text("tagged\nrcpt_to.in_host_list\nqueue.maildir\n")
    return config


def events(plugin: Plugin) -> list[str]:
    found = vars(plugin)["events"]
    assert isinstance(found, list)
    return found


async def stopped(plugin: Plugin) -> None:
    event = vars(plugin)["stopped"]
    assert isinstance(event, trio.Event)
    with trio.fail_after(5):
        await event.wait()


async def vrfy(client: SMTPClient) -> str:
    reply = await client.command("VRFY someone")
    assert reply.code == 250
    return reply.text


# --- in place ---------------------------------------------------------------------------------


async def test_new_connections_get_the_new_configuration_old_ones_finish_on_theirs(
    tmp_path: Path,
) -> None:
    config = write_site(tmp_path)
    server = Server.from_config_dir(config)
    async with trio.open_nursery() as nursery:
        [(_, port)] = await nursery.start(server.serve)
        [before, *_] = server.plugins
        old = await start_transaction(port)
        write_site(tmp_path, greeting="second", tag="two")

        assert await server.reload()
        [after, *_] = server.plugins
        assert after is not before
        assert events(after) == ["ready"], "the new serve task is ready before new clients"
        new = await SMTPClient.connect("127.0.0.1", port)
        assert new.greeting.lines == ["mx.example second"]
        assert await vrfy(new) == "2.1.5 tag two"
        await new.aclose()

        assert await vrfy(old) == "2.1.5 tag one"
        assert await finish_transaction(old) == 250
        assert (await old.command("MAIL FROM:<s@example.org>")).code == 250
        assert await vrfy(old) == "2.1.5 tag one"
        assert events(before) == ["ready"], "cancelled while its connection was open"
        assert (await old.command("QUIT")).code == 221
        await old.aclose()
        await stopped(before)
        assert events(before) == ["ready", "cancelled"]
        assert events(after) == ["ready"]
        nursery.cancel_scope.cancel()
    assert events(after) == ["ready", "cancelled"]
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 1


async def test_a_reload_that_fails_keeps_the_previous_configuration(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_site(tmp_path)
    server = Server.from_config_dir(config)
    async with trio.open_nursery() as nursery:
        [(_, port)] = await nursery.start(server.serve)
        [before, *_] = server.plugins

        (config / "smtp.toml").write_text('hostname = "bad host"\n')
        assert not await server.reload()
        [error] = messages(caplog, Level.ERROR)
        assert error == (
            f"[-] [server] reload failed: {config / 'smtp.toml'}: hostname: 'bad host' is not a "
            "domain name (labels of letters, digits and inner hyphens, at most 63 long, joined by "
            "dots) nor an address literal such as [192.0.2.1]; still running the previous "
            "configuration"
        )

        write_site(tmp_path, greeting="second")
        (config / "plugins").write_text("tagged\nno_such_plugin\n")
        assert not await server.reload()
        assert "plugin 'no_such_plugin' not found" in messages(caplog, Level.ERROR)[-1]

        write_site(tmp_path, greeting="second", tag="two")
        (config / "tagged.toml").write_text('tag = "two"\nfail_to_start = true\n')
        assert not await server.reload()
        assert messages(caplog, Level.CRIT)[-1] == (
            "[-] [tagged] plugin 'tagged': serve task failed before it was ready: "
            "RuntimeError('two: cannot start'); reload abandoned, still running the previous "
            "configuration"
        )

        assert server.plugins[0] is before
        assert events(before) == ["ready"]
        client = await SMTPClient.connect("127.0.0.1", port)
        assert client.greeting.lines == ["mx.example first"]
        assert await vrfy(client) == "2.1.5 tag one"
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_listeners_change_only_with_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_site(tmp_path)
    server = Server.from_config_dir(config)
    async with trio.open_nursery() as nursery:
        [(_, port)] = await nursery.start(server.serve)
        listen = server.config.listen
        (config / "smtp.toml").write_text(
            SMTP_TOML.format(greeting="second", address="127.0.0.1:2")
        )
        assert await server.reload()
        assert server.config.listen == listen
        assert (
            f"[-] [server] reload: listen in {config / 'smtp.toml'} is now 127.0.0.1:2; listeners "
            "change only with a restart, so the server goes on listening on 127.0.0.1:0 as before"
        ) in messages(caplog, Level.WARN)
        client = await SMTPClient.connect("127.0.0.1", port)
        assert client.greeting.lines == ["mx.example second"]
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_an_embedded_server_reloads_to_a_server_made_in_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = make_plugin(Pool), make_plugin(Pool)
    server = Server(test_config(), [first, MemoryQueue])
    assert not await server.reload(Server(test_config(), [second])), "not serving yet"
    async with trio.open_nursery() as nursery:
        [(_, port)] = await nursery.start(server.serve)
        moved = Server(test_config(listen=[*server.config.listen, *server.config.listen]))
        assert not await server.reload(moved)
        assert "listeners change only with a restart" in messages(caplog, Level.ERROR)[-1]

        assert await server.reload(Server(test_config(greeting="again"), [second, AcceptAll]))
        await trio.testing.wait_all_tasks_blocked()
        assert first.events == ["ready", "cancelled"], "no connection kept it"
        assert second.events == ["ready"]
        client = await SMTPClient.connect("127.0.0.1", port)
        assert client.greeting.lines == ["tsmtp.test again"]
        assert (await client.command("EHLO client.example")).code == 250
        reply = await client.send_message("s@example.org", ["alice@example.com"], "x")
        assert reply.code == 451
        await client.aclose()
        nursery.cancel_scope.cancel()
    assert MemoryQueue.stored == [], "no queue plugin in the new configuration"


# --- tsmtp run, SIGHUP and tsmtp reload -------------------------------------------------------


def tsmtp(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tsmtp", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def greeting_of(port: int) -> bytes:
    with smtplib.SMTP(timeout=10) as client:
        code, text = client.connect("127.0.0.1", port)
        assert code == 220
        return text


def test_tsmtp_reload_signals_the_server_named_by_the_pid_file(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    smtp_toml = config / "smtp.toml"
    original = smtp_toml.read_text()
    pid_file = tmp_path / "var" / "tsmtp.pid"
    server = Master(tmp_path, config)
    try:
        port = int(server.wait_for(r"listening on 127\.0\.0\.1:(\d+)")[1])
        assert pid_file.read_text() == f"{server.proc.pid}\n"
        second = tsmtp("run", "--config", str(config), "--listen", "127.0.0.1:0", cwd=tmp_path)
        assert second.returncode == 1
        assert second.stderr == (
            f"tsmtp: var/tsmtp.pid: another tsmtp server (pid {server.proc.pid}) is running "
            "with this pid file; stop it first, or give this one another pid_file\n"
        )

        smtp_toml.write_text('greeting = "reloaded by tsmtp reload"\n' + original)
        done = tsmtp("reload", "--config", "config", cwd=tmp_path)
        assert (done.returncode, done.stdout) == (
            0,
            f"config: configuration OK; sent SIGHUP to the server (pid {server.proc.pid})\n",
        )
        server.wait_for(r"\[NOTICE\] \[-\] \[server\] reloaded: plugins relay_acl, ")
        assert greeting_of(port) == b"localhost reloaded by tsmtp reload"

        # A configuration that fails the check is not even sent to the server...
        smtp_toml.write_text('greeting = "ready\\r\\n250 fake"\n' + original)
        done = tsmtp("reload", "--config", "config", cwd=tmp_path)
        assert done.returncode == 2
        assert done.stderr.endswith("(not reloaded: the server keeps its configuration)\n"), (
            done.stderr
        )
        # ...and a SIGHUP sent anyway leaves the server as it was.
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for(
            r"\[ERROR\] \[-\] \[server\] reload failed: \S+/config/smtp.toml: greeting: "
        )
        assert greeting_of(port) == b"localhost reloaded by tsmtp reload"

        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
    finally:
        server.close()
    assert not pid_file.exists()
    smtp_toml.write_text(original)
    done = tsmtp("reload", "--config", "config", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("tsmtp: var/tsmtp.pid: no pid file, so no server is running")


# --- the pid file -----------------------------------------------------------------------------


def test_a_pid_file_held_by_a_live_server_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run" / "tsmtp.pid"
    holder = PidFile(path)
    assert holder.acquire() is None
    assert path.read_text() == f"{os.getpid()}\n"
    assert running_server_pid(path) == os.getpid()
    with pytest.raises(PidFileError, match=rf"another tsmtp server \(pid {os.getpid()}\)"):
        PidFile(path).acquire()
    holder.release()
    assert not path.exists()
    with pytest.raises(PidFileError, match="no pid file"):
        running_server_pid(path)


def test_a_stale_pid_file_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "tsmtp.pid"
    path.write_text("4194304\n")  # no server holds it: it was killed, say
    with pytest.raises(PidFileError, match="stale pid file"):
        running_server_pid(path)
    taker = PidFile(path)
    assert taker.acquire() == 4194304
    assert path.read_text() == f"{os.getpid()}\n"
    taker.release()


def test_release_leaves_a_file_that_is_not_its_own(tmp_path: Path) -> None:
    path = tmp_path / "tsmtp.pid"
    holder = PidFile(path)
    holder.acquire()
    path.unlink()
    path.write_text("123\n")  # someone else's now
    holder.release()
    assert path.read_text() == "123\n"


def test_an_unwritable_pid_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(PidFileError, match="cannot write the pid file"):
        PidFile(tmp_path / "file" / "tsmtp.pid").acquire()
