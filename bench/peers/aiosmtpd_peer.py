"""aiosmtpd peer for the tsmtp benchmark.

Runs a plain asyncio server with one aiosmtpd ``SMTP`` protocol object per
connection. Recipients are accepted when their domain is in ``--domains``
(the same check as tsmtp's ``rcpt_to.in_host_list``). The message is then
either dropped (``--store discard``) or written to a Maildir
(``--store maildir``): the file is written to ``tmp/``, fsynced, renamed
into ``new/`` and the ``new/`` directory is fsynced before the 250 reply.

Run with the interpreter of the aiosmtpd venv that setup_peers.sh builds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class DomainCheck:
    """Accept RCPT TO only for listed domains."""

    def __init__(self, domains: set[str]) -> None:
        self.domains = domains

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        domain = address.rpartition("@")[2].lower()
        if domain not in self.domains:
            return "550 5.7.1 relaying denied"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"


class DiscardHandler(DomainCheck):
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 2.0.0 OK discarded"


class MaildirHandler(DomainCheck):
    def __init__(self, domains: set[str], root: Path) -> None:
        super().__init__(domains)
        self.tmp = root / "tmp"
        self.new = root / "new"
        for sub in (self.tmp, self.new, root / "cur"):
            sub.mkdir(parents=True, exist_ok=True)
        self.seq = itertools.count()
        self.host = socket.gethostname().replace("/", "_").replace(":", "_")

    def _deliver(self, content: bytes) -> str:
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(self.seq)}.{self.host}"
        tmp_path = self.tmp / name
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp_path, self.new / name)
        dfd = os.open(self.new, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return name

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        try:
            name = await asyncio.to_thread(self._deliver, content)
        except OSError as exc:
            return f"451 4.3.0 maildir write failed: {exc.strerror}"
        return f"250 2.0.0 OK {name}"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--store", choices=("discard", "maildir"), default="discard")
    ap.add_argument("--maildir", type=Path)
    ap.add_argument("--domains", default="example.com")
    ap.add_argument("--hostname", default="bench.local")
    ap.add_argument("--backlog", type=int, default=4096)
    return ap.parse_args()


async def serve(args: argparse.Namespace) -> None:
    domains = {d.strip().lower() for d in args.domains.split(",") if d.strip()}
    handler: Any
    if args.store == "maildir":
        if args.maildir is None:
            raise SystemExit("--maildir is required with --store maildir")
        handler = MaildirHandler(domains, args.maildir)
    else:
        handler = DiscardHandler(domains)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname=args.hostname, ident="aiosmtpd-peer"),
        host=args.host,
        port=args.port,
        backlog=args.backlog,
        reuse_address=True,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"aiosmtpd peer listening on {args.host}:{args.port} store={args.store}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    asyncio.run(serve(parse_args()))


if __name__ == "__main__":
    main()
