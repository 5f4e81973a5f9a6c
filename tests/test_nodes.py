"""Several nodes: real worker processes, a killed worker restarted, SIGTERM mid-transaction,
serve tasks in the workers, and SIGHUP checking the configuration before it restarts them."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class Master:
    def __init__(self, cwd: Path, config: Path) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tsmtp",
                "run",
                "--config",
                str(config),
                "--listen",
                "127.0.0.1:0",
            ],
            cwd=cwd,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.reader.join(timeout=10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        for line in self.seen:
            if (match := re.search(pattern, line)) is not None:
                self.seen.remove(line)
                return match
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and self.lines.empty():
                break
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            match = re.search(pattern, line)
            if match is not None:
                return match
            self.seen.append(line)
        raise AssertionError(f"no {pattern!r} in {self.seen}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"


def send(port: int, i: int) -> None:
    """Send one message, trying again after a 4xx as a real client would (a node that is
    being restarted answers 421 to a client that caught it between transactions)."""
    for _ in range(5):
        try:
            client = smtplib.SMTP("127.0.0.1", port, timeout=10)
            try:
                client.sendmail(
                    "s@example.org", [f"r{i}@example.com"], f"Subject: {i}\r\n\r\nbody\r\n"
                )
            finally:
                client.close()  # no QUIT: a 421 after the 250 must not cause a resend
            return
        except smtplib.SMTPResponseException as exc:
            if not 400 <= exc.smtp_code < 500:
                raise
        except smtplib.SMTPServerDisconnected:
            pass
        time.sleep(0.2)
    raise AssertionError(f"message {i} was not accepted after 5 attempts")


def reply(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n") or data.split(b"\r\n")[-2][3:4] == b"-":
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_nodes_share_the_socket_survive_a_crash_and_drain_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    smtp_toml = config / "smtp.toml"
    text = re.sub(r"(?m)^shutdown_grace = .*$", "shutdown_grace = 10.0", smtp_toml.read_text())
    text = re.sub(r"(?m)^nodes = .*$", "nodes = 2", text)
    assert "nodes = 2" in text
    smtp_toml.write_text(text)
    master = Master(tmp_path, config)
    try:
        port = int(master.wait_for(r"listening on 127\.0\.0\.1:(\d+) with 2 nodes")[1])
        pids = {int(master.wait_for(rf"node {n} started \(pid (\d+)\)")[1]) for n in (0, 1)}
        assert len(pids) == 2 and master.proc.pid not in pids
        for i in range(10):
            send(port, i)

        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        master.wait_for(rf"node \d \(pid {victim}\) exited with -9; restarting")
        new_pid = int(master.wait_for(r"node \d started \(pid (\d+)\)")[1])
        assert new_pid not in pids
        for i in range(10, 20):
            send(port, i)

        # SIGHUP: every node is replaced, one at a time, and mail keeps flowing meanwhile.
        live = (pids - {victim}) | {new_pid}
        os.kill(master.proc.pid, signal.SIGHUP)
        for i in range(20, 25):
            send(port, i)
        reloaded = {int(master.wait_for(r"node \d started \(pid (\d+)\)")[1]) for _ in range(2)}
        assert not reloaded & live
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(alive(pid) for pid in live):
            time.sleep(0.05)
        assert not any(alive(pid) for pid in live)
        send(port, 25)
        new_pid = max(reloaded)
        pids |= live | reloaded

        # A transaction in progress when the master is told to stop is finished, not dropped.
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert reply(sock).startswith(b"220")
        sock.sendall(b"EHLO x\r\n")
        reply(sock)
        sock.sendall(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<last@example.com>\r\nDATA\r\n")
        got = b""
        while got.count(b"\r\n") < 3:
            got += sock.recv(4096)
        assert got.split(b"\r\n")[2].startswith(b"354")
        sock.sendall(b"Subject: in flight\r\n\r\nhalf")
        os.kill(master.proc.pid, signal.SIGTERM)
        time.sleep(0.5)
        sock.sendall(b" and the rest\r\n.\r\n")
        assert reply(sock).startswith(b"250 ")
        assert master.proc.wait(timeout=30) == 0
        sock.close()
    finally:
        master.close()
    stored = list((tmp_path / "var" / "mail" / "new").iterdir())
    assert len(stored) == 27
    survivors = [pid for pid in pids | {new_pid} if alive(pid)]
    assert survivors == [], f"workers outlived the master: {survivors}"


MARKER = """
import os
from pathlib import Path

import trio

from tsmtp import Plugin, PluginConfig, override


class MarkerConfig(PluginConfig, frozen=True):
    directory: str


class Marker(Plugin):
    config: MarkerConfig

    @override
    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        (Path(self.config.directory) / f"serve-{os.getpid()}").touch()
        task_status.started()
        await trio.sleep_forever()
"""


def wait_until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def greeting(port: int) -> bytes:
    with smtplib.SMTP(timeout=10) as client:
        return client.connect("127.0.0.1", port)[1]


def test_each_node_runs_its_serve_tasks_and_sighup_checks_before_restarting(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    markers = tmp_path / "markers"
    markers.mkdir()
    (config / "site").mkdir()
    (config / "site" / "marker.py").write_text(MARKER)
    (config / "marker.toml").write_text(f"directory = {str(markers)!r}\n")
    (config / "plugins").write_text("marker\n" + (config / "plugins").read_text())
    smtp_toml = config / "smtp.toml"
    good = re.sub(r"(?m)^nodes = .*$", "nodes = 2", smtp_toml.read_text())
    good = good.replace("search_path = []", 'search_path = ["site"]')
    smtp_toml.write_text(good)
    master = Master(tmp_path, config)
    try:
        port = int(master.wait_for(r"listening on 127\.0\.0\.1:(\d+) with 2 nodes")[1])
        pids = {int(master.wait_for(rf"node {n} started \(pid (\d+)\)")[1]) for n in (0, 1)}
        assert (tmp_path / "var" / "tsmtp.pid").read_text() == f"{master.proc.pid}\n"

        def serving() -> set[int]:
            return {int(p.name.removeprefix("serve-")) for p in markers.iterdir()}

        wait_until(lambda: serving() == pids)  # the workers' own tasks, none in the master
        send(port, 0)

        smtp_toml.write_text(re.sub(r"(?m)^hostname = .*$", 'hostname = "bad host"', good))
        os.kill(master.proc.pid, signal.SIGHUP)
        master.wait_for(
            r"\[ERROR\] \[-\] \[master\] SIGHUP: reload refused, the nodes keep the previous "
            r"configuration: \S+/smtp\.toml: hostname: 'bad host' is not a domain name"
        )
        assert all(alive(pid) for pid in pids)
        assert not [line for line in master.seen if "restarting the nodes" in line]
        send(port, 1)

        smtp_toml.write_text('greeting = "second"\n' + good)
        os.kill(master.proc.pid, signal.SIGHUP)
        master.wait_for(r"SIGHUP: restarting the nodes one at a time")
        fresh = {int(master.wait_for(r"node \d started \(pid (\d+)\)")[1]) for _ in range(2)}
        assert not fresh & pids
        wait_until(lambda: not any(alive(pid) for pid in pids))
        wait_until(lambda: serving() == pids | fresh)
        assert greeting(port) == b"localhost second"
        send(port, 2)
        master.proc.send_signal(signal.SIGTERM)
        assert master.proc.wait(timeout=30) == 0
    finally:
        master.close()
    assert len(list((tmp_path / "var" / "mail" / "new").iterdir())) == 3
    assert not (tmp_path / "var" / "tsmtp.pid").exists()
