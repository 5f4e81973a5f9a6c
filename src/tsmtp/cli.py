"""The ``tsmtp`` command: ``run`` a server, ``check`` a config directory, ``reload`` the
running server."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import trio

from . import log as tlog
from .config import ConfigError, Listener
from .lifecycle import PluginTaskError
from .nodes import inherited_sockets, run_master
from .passwords import passwd_main
from .pidfile import PidFile, PidFileError, running_server_pid
from .server import Server

E = TypeVar("E", bound=BaseException)


def _add_listen(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--listen",
        action="append",
        default=[],
        metavar="HOST:PORT[,SETTING...]",
        help=(
            "listen here instead of the addresses in smtp.toml (repeatable); the listener keeps "
            "the settings of smtp.toml's listeners, and the settings on which they differ must "
            "follow, such as 127.0.0.1:2587,tls=required,require_auth "
            "(tls=, auth=, require_auth, proxy_protocol)"
        ),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tsmtp", description="An SMTP server driven by typed plugins."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the server")
    run.add_argument(
        "--config", type=Path, default=Path("config"), help="config directory (default: config)"
    )
    _add_listen(run)
    run.add_argument(
        "--log-level",
        metavar="LEVEL",
        help=f"override log_level from smtp.toml ({', '.join(tlog.Level.__members__)})",
    )
    check = commands.add_parser("check", help="load config and plugins, report problems, exit")
    check.add_argument("--config", type=Path, default=Path("config"), help="config directory")
    _add_listen(check)
    check.add_argument(
        "--hooks", action="store_true", help="print each hook's handlers in the order they run"
    )
    reload = commands.add_parser(
        "reload",
        help="check the config, then make the running server (found by its pid_file) read it",
    )
    reload.add_argument("--config", type=Path, default=Path("config"), help="config directory")
    commands.add_parser(
        "passwd", help="add or change a user in an auth.flat_file users file", add_help=False
    )
    return parser


def _load(config_dir: Path, listen: Sequence[str] = ()) -> Server:
    return Server.from_config_dir(config_dir, listen=listen)


async def _reload(server: Server, log_level: str | None) -> None:
    if await server.reload() and log_level is None:
        tlog.logger.setLevel(tlog.Level[server.config.log_level])


async def _watch_signals(
    server: Server,
    nursery: trio.Nursery,
    node: bool,
    log_level: str | None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                if node:
                    tlog.log(
                        tlog.Level.NOTICE,
                        "SIGHUP ignored: send it to the master to restart the nodes; "
                        "nothing changed",
                        source="server",
                    )
                else:
                    tlog.log(tlog.Level.NOTICE, "SIGHUP: reloading", source="server")
                    # In the background, so that a SIGTERM is heard while new plugins start.
                    nursery.start_soon(_reload, server, log_level)
                continue
            if server.stopping:
                tlog.log(tlog.Level.NOTICE, f"{name} again: stopping now", source="server")
                nursery.cancel_scope.cancel()
                return
            tlog.log(tlog.Level.NOTICE, f"{name}: shutting down gracefully", source="server")
            server.shutdown()


async def _run(
    server: Server,
    sockets: list[tuple[socket.socket, Listener]] | None,
    log_level: str | None,
) -> None:
    failure: PluginTaskError | None = None
    async with trio.open_nursery() as nursery:
        # Watch before listening, so that no signal finds the default handlers in place.
        await nursery.start(_watch_signals, server, nursery, sockets is not None, log_level)
        try:
            await server.serve(sockets=sockets)
        except PluginTaskError as exc:  # raised as it is, not in a group of this nursery
            failure = exc
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure


def _find(exc: BaseException, kind: type[E]) -> E | None:
    """``exc`` if it is a ``kind``, else the first ``kind`` in the groups it holds."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find(inner, kind)
            if found is not None:
                return found
    return None


def _signal_reload(server: Server, config_dir: Path) -> int:
    if not server.config.pid_file:
        print(
            f"tsmtp: {config_dir / 'smtp.toml'}: pid_file is empty, so the running server cannot "
            "be found; send it SIGHUP yourself",
            file=sys.stderr,
        )
        return 1
    try:
        pid = running_server_pid(Path(server.config.pid_file))
        os.kill(pid, signal.SIGHUP)
    except (PidFileError, OSError) as exc:
        print(f"tsmtp: {exc}", file=sys.stderr)
        return 1
    print(f"{config_dir}: configuration OK; sent SIGHUP to the server (pid {pid})")
    return 0


def _serve(server: Server, argv: Sequence[str], args: argparse.Namespace) -> int:
    sockets = inherited_sockets()
    pid_file = None
    if sockets is None and server.config.pid_file:  # a worker's master holds the pid file
        pid_file = PidFile(Path(server.config.pid_file))
        try:
            stale = pid_file.acquire()
        except PidFileError as exc:
            print(f"tsmtp: {exc}", file=sys.stderr)
            return 1
        if stale is not None:
            tlog.log(
                tlog.Level.NOTICE,
                f"{pid_file.path}: taking over the stale pid file of pid {stale}",
                source="server",
            )
    try:
        if sockets is None and server.config.node_count > 1:
            run_master(server, argv, args.config, args.listen)
        else:
            trio.run(_run, server, sockets, args.log_level)
    finally:
        if pid_file is not None:
            pid_file.release()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["passwd"]:
        return passwd_main(argv[1:])
    args = _parser().parse_args(argv)
    level = getattr(args, "log_level", None)
    if level is not None and level.upper() not in tlog.Level.__members__:
        levels = ", ".join(tlog.Level.__members__)
        print(
            f"tsmtp: --log-level: {level!r} is not a log level; use one of {levels}",
            file=sys.stderr,
        )
        return 2
    try:
        server = _load(args.config, getattr(args, "listen", ()))
    except ConfigError as exc:
        kept = " (not reloaded: the server keeps its configuration)" * (args.command == "reload")
        print(f"tsmtp: {exc}{kept}", file=sys.stderr)
        return 2
    if args.command == "check":
        names = ", ".join(p.name for p in server.plugins) or "(none)"
        print(f"{args.config}: configuration OK; plugins: {names}")
        if args.hooks:
            print("\n".join(server.runner.describe()))
        return 0
    if args.command == "reload":
        return _signal_reload(server, args.config)
    tlog.configure(level or server.config.log_level)
    try:
        return _serve(server, argv, args)
    except (OSError, BaseExceptionGroup, PluginTaskError) as exc:
        failure = _find(exc, PluginTaskError)
        if failure is not None:
            print(f"tsmtp: {failure}; the server stopped", file=sys.stderr)
            return 1
        error = _find(exc, OSError)
        if error is None:
            raise
        print(f"tsmtp: {error}", file=sys.stderr)
        return 1
