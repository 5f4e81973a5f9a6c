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
        metavar="HOST:PORT",
        help="listen here instead of the addresses in smtp.toml (repeatable)",
    )
    run.add_argument("--log-level", help="override log_level from smtp.toml")
    check = commands.add_parser("check", help="load config and plugins, report problems, exit")
    check.add_argument("--config", type=Path, default=Path("config"), help="config directory")
    commands.add_parser(
        "passwd", help="add or change a user in an auth.flat_file users file", add_help=False
    )
    return parser


def _load(config_dir: Path, listen: Sequence[str] = ()) -> Server:
    return Server.from_config_dir(config_dir, listen=listen)


async def _watch_signals(server: Server, scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if server.stopping:
                tlog.log(tlog.Level.NOTICE, f"{name} again: stopping now", source="server")
                scope.cancel()
                return
            tlog.log(tlog.Level.NOTICE, f"{name}: shutting down gracefully", source="server")
            server.shutdown()


async def _run(server: Server, sockets: list[tuple[socket.socket, Listener]] | None) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, server, nursery.cancel_scope)
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
    try:
        server = _load(args.config, getattr(args, "listen", ()))
    except ConfigError as exc:
        print(f"tsmtp: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        names = ", ".join(p.name for p in server.plugins) or "(none)"
        print(f"{args.config}: configuration OK; plugins: {names}")
        return 0
    tlog.configure(args.log_level or server.config.log_level)
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
