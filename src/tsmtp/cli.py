"""The ``tsmtp`` command: ``run`` a server, ``check`` a config directory."""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from . import log as tlog
from .config import ConfigError, Listener
from .nodes import inherited_sockets, run_master
from .passwords import passwd_main
from .server import Server


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tsmtp", description="An SMTP server driven by typed plugins."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the server")
    run.add_argument(
        "--config", type=Path, default=Path("config"), help="config directory (default: config)"
    )
    run.add_argument(
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
    run.add_argument(
        "--log-level",
        metavar="LEVEL",
        help=f"override log_level from smtp.toml ({', '.join(tlog.Level.__members__)})",
    )
    check = commands.add_parser("check", help="load config and plugins, report problems, exit")
    check.add_argument("--config", type=Path, default=Path("config"), help="config directory")
    check.add_argument(
        "--hooks", action="store_true", help="print each hook's handlers in the order they run"
    )
    commands.add_parser(
        "passwd", help="add or change a user in an auth.flat_file users file", add_help=False
    )
    return parser


def _load(config_dir: Path, listen: Sequence[str] = ()) -> Server:
    return Server.from_config_dir(config_dir, listen=listen)


async def _watch_signals(
    server: Server,
    scope: trio.CancelScope,
    node: bool,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                # Until the configuration can be read again in place, a reload must at least
                # not cost the connections that are open.
                why = (
                    "send it to the master to restart the nodes"
                    if node
                    else "reload is not supported yet with nodes = 1"
                )
                tlog.log(
                    tlog.Level.NOTICE, f"SIGHUP ignored: {why}; nothing changed", source="server"
                )
                continue
            if server.stopping:
                tlog.log(tlog.Level.NOTICE, f"{name} again: stopping now", source="server")
                scope.cancel()
                return
            tlog.log(tlog.Level.NOTICE, f"{name}: shutting down gracefully", source="server")
            server.shutdown()


async def _run(server: Server, sockets: list[tuple[socket.socket, Listener]] | None) -> None:
    async with trio.open_nursery() as nursery:
        # Watch before listening, so that no signal finds the default handlers in place.
        await nursery.start(_watch_signals, server, nursery.cancel_scope, sockets is not None)
        await server.serve(sockets=sockets)
        nursery.cancel_scope.cancel()


def _os_error(exc: BaseException) -> OSError | None:
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _os_error(inner)
            if found is not None:
                return found
    return None


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
        print(f"tsmtp: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        names = ", ".join(p.name for p in server.plugins) or "(none)"
        print(f"{args.config}: configuration OK; plugins: {names}")
        if args.hooks:
            print("\n".join(server.runner.describe()))
        return 0
    tlog.configure(level or server.config.log_level)
    sockets = inherited_sockets(server.config)
    try:
        if sockets is None and server.config.node_count > 1:
            run_master(server, argv)
        else:
            trio.run(_run, server, sockets)
    except (OSError, BaseExceptionGroup) as exc:
        error = _os_error(exc)
        if error is None:
            raise
        print(f"tsmtp: {error}", file=sys.stderr)
        return 1
    return 0
