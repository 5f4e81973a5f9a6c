"""Several worker processes ("nodes") sharing one set of listening sockets.

The master opens the sockets, runs ``init_master`` once, then starts ``nodes`` workers, each a
``tsmtp run`` that inherits the sockets (with the master's listener settings) and runs
``init_child`` and its plugins' serve tasks. A worker that dies is started again. SIGTERM (or
SIGINT) is passed to every worker, which stops accepting and finishes its open transactions
within ``shutdown_grace``.

SIGHUP first runs ``tsmtp check`` on the configuration in a fresh process; if it fails, the
error is logged and nothing changes. Otherwise the workers are restarted one at a time, so they
read the configuration (and the plugins' code) again while the others keep serving. Restarting
rather than reloading inside each worker is what lets a reload pick up changed plugin code, and
each old worker's connections and serve tasks drain with it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec
import trio

from . import hooks
from .config import ConfigError, Listener
from .log import Level, log
from .server import Server, read_config
from .sockets import Sockets, open_sockets

WORKER_FDS = "TSMTP_WORKER_FDS"


def inherited_sockets() -> list[tuple[socket.socket, Listener]] | None:
    """In a worker, the listening sockets its master handed down, each with the settings the
    master listens with (None in a master)."""
    spec = os.environ.pop(WORKER_FDS, None)
    if spec is None:
        return None
    handed = msgspec.json.decode(spec, type=list[tuple[int, Listener]])
    return [(socket.socket(fileno=fd), settings) for fd, settings in handed]


class Master:
    """Starts, watches and stops the worker processes.

    ``argv`` is the ``tsmtp run`` command line each worker gets; ``config_dir`` and ``listen``
    are what it reads, so that SIGHUP can check them first.
    """

    def __init__(
        self, server: Server, argv: Sequence[str], config_dir: Path, listen: Sequence[str] = ()
    ) -> None:
        self.server = server
        self.config = server.config
        self.argv = list(argv)
        self.config_dir = config_dir
        self.listen = list(listen)
        self.socket_sets = open_sockets(self.config.listen, self.config.node_count)
        self._stop = trio.Event()
        self._processes: dict[int, trio.Process] = {}
        self._restarting: set[int] = set()
        self._started: dict[int, trio.Event] = {}

    @property
    def addresses(self) -> list[tuple[str, int]]:
        names = [s.getsockname() for s, _ in self.socket_sets[0]]
        return [(str(name[0]), int(name[1])) for name in names]

    def _worker_env(self, sockets: Sockets) -> dict[str, str]:
        # The settings travel with the sockets: a worker started after smtp.toml's listen
        # changed must still serve each socket as the master opened it.
        spec = msgspec.json.encode([(s.fileno(), settings) for s, settings in sockets])
        return {**os.environ, WORKER_FDS: spec.decode()}

    async def run(self) -> None:
        await self.server.runner.run(hooks.init_master, self.server.context)
        count = self.config.node_count
        log(
            Level.NOTICE,
            f"listening on {', '.join(f'{h}:{p}' for h, p in self.addresses)} with {count} nodes",
            source="master",
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_signals, nursery.cancel_scope)
                async with trio.open_nursery() as workers:
                    for slot in range(count):
                        workers.start_soon(self._keep_running, slot)
                nursery.cancel_scope.cancel()
        finally:
            for copy in self.socket_sets:
                for sock, _ in copy:
                    sock.close()
        log(Level.NOTICE, "all nodes stopped", source="master")

    async def _keep_running(self, slot: int) -> None:
        sockets = self.socket_sets[slot]
        fds = [s.fileno() for s, _ in sockets]
        failures = 0
        while not self._stop.is_set():
            started = trio.current_time()
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "tsmtp", *self.argv],
                pass_fds=fds,
                env=self._worker_env(sockets),
            )
            self._processes[slot] = process
            self._started.pop(slot, trio.Event()).set()
            log(Level.INFO, f"node {slot} started (pid {process.pid})", source="master")
            try:
                code = await process.wait()
            finally:
                if process.returncode is None:  # cancelled: make sure it does not outlive us
                    process.kill()
                    with trio.CancelScope(shield=True):
                        await process.wait()
            del self._processes[slot]
            if self._stop.is_set() or slot in self._restarting:
                self._restarting.discard(slot)
                failures = 0
                continue
            failures = failures + 1 if trio.current_time() - started < 10 else 1
            delay = min(0.5 * 2 ** (failures - 1), 30.0)
            log(
                Level.ERROR,
                f"node {slot} (pid {process.pid}) exited with {code}; restarting in {delay:g}s",
                source="master",
            )
            await trio.sleep(delay)

    async def _watch_signals(self, scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self._reload()
                    continue
                if self._stop.is_set():
                    log(Level.NOTICE, "second signal: killing the nodes", source="master")
                    for process in list(self._processes.values()):
                        process.kill()
                    continue
                self._stop.set()
                log(
                    Level.NOTICE,
                    f"{signal.Signals(signum).name}: stopping the nodes",
                    source="master",
                )
                for process in list(self._processes.values()):
                    process.send_signal(signal.SIGTERM)
                scope.deadline = min(
                    scope.deadline, trio.current_time() + self.config.shutdown_grace + 10
                )

    async def _check(self) -> str | None:
        """Why the configuration fails ``tsmtp check`` in a fresh process; None if it passes."""
        command = [sys.executable, "-m", "tsmtp", "check", "--config", str(self.config_dir)]
        command += [f"--listen={text}" for text in self.listen]
        with trio.move_on_after(120):
            done = await trio.run_process(
                command, check=False, stdout=subprocess.DEVNULL, capture_stderr=True
            )
            if done.returncode == 0:
                return None
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
            return lines[-1].removeprefix("tsmtp: ") if lines else f"exit {done.returncode}"
        return "tsmtp check did not finish within 120 seconds"

    def _warn_fixed_settings(self) -> None:
        """Log what a restart of the nodes cannot change."""
        try:
            new = read_config(self.config_dir, self.listen)
        except ConfigError:
            return
        if new.listen != self.config.listen:
            log(
                Level.WARN,
                "SIGHUP: listen changed in smtp.toml; listeners change only when the master "
                "restarts, so the nodes go on listening on "
                + ", ".join(listener.address for listener in self.config.listen),
                source="master",
            )
        if new.node_count != self.config.node_count:
            log(
                Level.WARN,
                f"SIGHUP: nodes changed in smtp.toml; the number of nodes changes only when the "
                f"master restarts, so {self.config.node_count} nodes go on running",
                source="master",
            )

    async def _reload(self) -> None:
        log(Level.NOTICE, "SIGHUP: checking the configuration", source="master")
        problem = await self._check()
        if problem is not None:
            log(
                Level.ERROR,
                f"SIGHUP: reload refused, the nodes keep the previous configuration: {problem}",
                source="master",
            )
            return
        self._warn_fixed_settings()
        log(Level.NOTICE, "SIGHUP: restarting the nodes one at a time", source="master")
        for slot in sorted(self._processes):
            process = self._processes.get(slot)
            if process is None or self._stop.is_set():
                continue
            self._restarting.add(slot)
            replaced = self._started[slot] = trio.Event()
            process.send_signal(signal.SIGTERM)
            # One at a time: the next node is restarted once this one's replacement runs.
            with trio.move_on_after(self.config.shutdown_grace + 20):
                await replaced.wait()


def run_master(
    server: Server, argv: Sequence[str], config_dir: Path, listen: Sequence[str] = ()
) -> None:
    trio.run(Master(server, argv, config_dir, listen).run)
