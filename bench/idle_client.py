"""Hold N SMTP sessions open and idle after EHLO (helper for bench/run.py).

Prints ``READY <opened> <failed>`` on stdout once every session has either
answered EHLO or failed, then keeps them open until stdin is closed.
Connections go to 127.0.0.1 only; at most ``--parallel`` are being set up
at any moment so that a short listen backlog is not overrun.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time


def raise_nofile(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def read_reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3])


async def open_one(port: int, sem: asyncio.Semaphore, keep: list[asyncio.StreamWriter]) -> bool:
    async with sem:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        try:
            if await read_reply(reader) != 220:
                raise ConnectionError("no 220")
            writer.write(b"EHLO idle.client\r\n")
            if await read_reply(reader) != 250:
                raise ConnectionError("EHLO refused")
        except (OSError, ConnectionError, ValueError):
            writer.close()
            return False
        keep.append(writer)
        return True


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--parallel", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    raise_nofile(args.count + 1024)

    keep: list[asyncio.StreamWriter] = []
    sem = asyncio.Semaphore(args.parallel)
    tasks = [asyncio.create_task(open_one(args.port, sem, keep)) for _ in range(args.count)]
    t0 = time.monotonic()
    _, pending = await asyncio.wait(tasks, timeout=args.timeout)
    for task in pending:
        task.cancel()
    opened = len(keep)
    print(f"READY {opened} {args.count - opened} {time.monotonic() - t0:.2f}", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    for writer in keep:
        writer.close()


if __name__ == "__main__":
    asyncio.run(main())
