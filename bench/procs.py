"""Process handling for the benchmark: start servers, measure, stop by PID.

Every server is started in a new session, so its process group id is its
pid; stopping it signals that group only (SIGTERM, then SIGKILL), never a
process found by name.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
NOFILE_WANTED = 65536


def raise_nofile(wanted: int = NOFILE_WANTED) -> int:
    """Raise RLIMIT_NOFILE of this process as far as allowed; return soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _read_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may hold spaces.
    return raw[raw.rindex(")") + 2 :].split()


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _read_stat(int(entry.name))
        if fields is None:
            continue
        kids.setdefault(int(fields[1]), []).append(int(entry.name))
    return kids


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    kids = _children_map()
    out: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        if not Path(f"/proc/{pid}").exists():
            continue
        out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime+stime (+ reaped children's) summed over ``pids``, in seconds."""
    ticks = 0
    for pid in pids:
        fields = _read_stat(pid)
        if fields is None:
            continue
        # state is fields[0]; utime, stime, cutime, cstime are stat fields 14-17.
        ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / CLK_TCK


def cpus_busy(cpus: Iterable[int]) -> float:
    """Seconds the given CPUs have run processes (user, nice, system) or lost to steal.

    From /proc/stat. Interrupt time is left out: the network work for a server's own
    connections lands there, and it would read as someone else's.
    """
    wanted = {f"cpu{c}" for c in cpus}
    ticks = 0
    with open("/proc/stat") as stat:
        for line in stat:
            name, *fields = line.split()
            if name in wanted:
                values = [int(f) for f in fields]
                ticks += values[0] + values[1] + values[2] + values[7]  # user nice system steal
    return ticks / CLK_TCK


def rss_kib(pids: Iterable[int]) -> int:
    """VmRSS summed over ``pids``, in KiB."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
                break
    return total


def _preexec(cpus: frozenset[int] | None) -> None:
    raise_nofile()
    if cpus:
        os.sched_setaffinity(0, cpus)


def split_cpus() -> tuple[frozenset[int], frozenset[int]] | None:
    """(CPUs for a server, CPUs for its clients), or None with fewer than two CPUs."""
    mine = sorted(os.sched_getaffinity(0))
    if len(mine) < 2:
        return None
    return frozenset(mine[:1]), frozenset(mine[1:])


@dataclass
class Server:
    """A server process that this benchmark started."""

    name: str
    argv: Sequence[str]
    port: int
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    cpus: frozenset[int] | None = None  # CPU affinity of the whole process tree, if set
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    stopped: bool = field(default=False, init=False)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=env,
                start_new_session=True,
                preexec_fn=functools.partial(_preexec, self.cpus),
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tree(self) -> list[int]:
        return process_tree(self.pid) if self.alive() else []

    def rss_kib(self) -> int:
        return rss_kib(self.tree())

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.tree())

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Poll-connect until the port answers with a 220 greeting."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.proc and self.proc.returncode}")
            try:
                last = greeting(self.port)
                if last.startswith("220"):
                    return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready on port {self.port}: {last}")

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left."""
        if self.proc is None or self.stopped:
            return
        self.stopped = True
        pgid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace)
        # Children of the group may outlive the leader.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def greeting(port: int, timeout: float = 2.0) -> str:
    """Connect, read the first reply line, send QUIT."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        data = b""
        while b"\n" not in data:
            chunk = s.recv(512)
            if not chunk:
                break
            data += chunk
        with contextlib.suppress(OSError):
            s.sendall(b"QUIT\r\n")
        return data.decode("latin-1").strip()
