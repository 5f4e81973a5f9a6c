"""Several worker processes ("nodes") sharing one set of listening sockets.

The master opens the sockets, runs ``init_master`` once, then starts ``nodes`` workers, each a
``tsmtp run`` that inherits the sockets and runs ``init_child``. A worker that dies is started
again. SIGTERM (or SIGINT) is passed to every worker, which stops accepting and finishes its
open transactions within ``shutdown_grace``; SIGHUP restarts the workers one at a time, so they
read the configuration again while the others keep serving.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Sequence

import trio

from . import hooks
from .config import Listener, ServerConfig
from .log import Level, log
from .server import Server
from .sockets import Sockets, open_sockets

WORKER_FDS = "TSMTP_WORKER_FDS"


def inherited_sockets(config: ServerConfig) -> list[tuple[socket.socket, Listener]] | None:
    """In a worker, the listening sockets its master handed down (None in a master)."""
    spec = os.environ.pop(WORKER_FDS, None)
    if spec is None:
        return None
    sockets = []
    for item in spec.split(","):
        fd, index = (int(x) for x in item.split(":"))
        sockets.append((socket.socket(fileno=fd), config.listen[index]))
    return sockets


class Master:
    """Starts, watches and stops the worker processes."""

    def __init__(self, server: Server, argv: Sequence[str]) -> None:
        self.server = server
        self.config = server.config
        self.argv = list(argv)
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
        index = {id(settings): i for i, settings in enumerate(self.config.listen)}
        spec = ",".join(f"{s.fileno()}:{index[id(settings)]}" for s, settings in sockets)
        return {**os.environ, WORKER_FDS: spec}

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

    async def _reload(self) -> None:
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


def run_master(server: Server, argv: Sequence[str]) -> None:
    trio.run(Master(server, argv).run)
