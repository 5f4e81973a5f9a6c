#!/usr/bin/env python3
"""Benchmark tsmtp against peer SMTP servers on loopback.

    python bench/run.py            # full run (3 timed runs per figure)
    python bench/run.py --quick    # smoke test: 1 run, small counts

Installs the peers (bench/setup_peers.sh), then for each server in turn:
starts it on a fresh 127.0.0.1 port, drives it with Postfix's smtp-source
and with the bench's own clients, and stops it by its process group.
Prints the report and writes it to bench/RESULTS.md.
Only the standard library is needed to run this script.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import peerdefs  # noqa: E402
import report  # noqa: E402
import scenarios  # noqa: E402
from peerdefs import Peer  # noqa: E402
from procs import Server, free_port, raise_nofile  # noqa: E402


def log(msg: str) -> None:
    print(msg, flush=True)


def loadavg() -> str:
    """1-minute load average: other work on the machine skews the figures."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="tsmtp peer benchmark (loopback only)")
    ap.add_argument("--quick", action="store_true", help="1 run per figure, small counts")
    ap.add_argument("--skip-install", action="store_true", help="do not run setup_peers.sh")
    ap.add_argument(
        "--peers",
        default="",
        help="comma-separated substrings; run only matching peers (smtp-sink is always kept)",
    )
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="report file")
    ap.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds; peers not started before this much time has passed are skipped "
        "(default 1500, quick 600)",
    )
    ap.add_argument(
        "--tsmtp-log-level",
        default="WARN",
        help="log_level written to tsmtp's smtp.toml (default WARN, like the Haraka config)",
    )
    return ap.parse_args()


def install() -> None:
    log("== installing peers (idempotent)")
    rc = subprocess.run(["bash", str(HERE / "setup_peers.sh")], timeout=1200).returncode
    if rc != 0:
        log(f"   setup_peers.sh exited {rc}; peers that are missing will be reported n/a")


def select_peers(spec: str) -> list[Peer]:
    if not spec:
        return list(peerdefs.ALL_PEERS)
    wanted = [s.strip().lower() for s in spec.split(",") if s.strip()]
    return [
        p
        for p in peerdefs.ALL_PEERS
        if p.family == "smtp-sink" or any(w in p.name.lower() for w in wanted)
    ]


def launch(peer: Peer, port: int, base: Path, tsmtp_cmd: Any, log_level: str) -> peerdefs.Launch:
    if peer.family == "smtp-sink":
        return peerdefs.launch_sink(peer, port, base)
    if peer.family == "aiosmtpd":
        return peerdefs.launch_aiosmtpd(peer, port, base)
    if peer.family == "haraka":
        return peerdefs.launch_haraka(peer, port, base)
    return peerdefs.launch_tsmtp(peer, port, base, tsmtp_cmd, log_level)


def start_server(peer: Peer, base: Path, tsmtp_cmd: Any, log_level: str) -> peerdefs.Launch | str:
    """Start the peer on a fresh port; the Launch, or a status text on failure."""
    port = free_port()
    started = launch(peer, port, base, tsmtp_cmd, log_level)
    server = started.server
    log(f"== {peer.name}: starting on 127.0.0.1:{port}")
    try:
        server.start()
        server.wait_ready(timeout=20.0)
    except (OSError, RuntimeError) as exc:
        lines = [ln for ln in server.log_tail(8).splitlines() if ln and not ln.startswith("===")]
        tail = " | ".join(lines[-3:])
        log(f"   failed to start: {exc}\n   log: {server.log_path}")
        server.stop()
        return f"n/a: failed to start ({exc}): {tail}"[:400]
    return started


def stop_checked(server: Server, res: dict[str, Any]) -> Server:
    """Stop the server; mark the result failed if it had died on its own."""
    if server.proc is not None and not server.alive() and res.get("status") == "ok":
        res["status"] = f"failed: server exited early (rc {server.proc.returncode})"
    server.stop()
    return server


def bench_peer(peer: Peer, plan: scenarios.Plan, tsmtp_cmd: Any, log_level: str) -> dict[str, Any]:
    res: dict[str, Any] = {"tsmtp": peer.is_tsmtp, "store": peer.store, "nodes": peer.nodes}
    why = peerdefs.peer_available(peer, tsmtp_cmd)
    if why:
        res["status"] = f"n/a: {why}"
        log(f"== {peer.name}: n/a ({why})")
        return res
    base = peerdefs.fresh_dir(peerdefs.WORK / "runs" / peerdefs.slug(peer))
    started = start_server(peer, base, tsmtp_cmd, log_level)
    if isinstance(started, str):
        res["status"] = started
        return res
    server, maildir = started.server, started.maildir
    res["status"] = "ok"
    res["pids_at_start"] = len(server.tree())
    res["rss_start_kib"] = server.rss_kib()
    check = scenarios.StoreCheck()
    try:
        for spec in plan.throughput:
            log(f"   {spec.key.upper()}: {spec.title}")
            res[spec.key] = scenarios.run_throughput(server, maildir, spec, plan, check, log)
        log("   latency")
        res["latency"] = scenarios.run_latency(server, maildir, plan, check, log)
        # Idle sessions are measured on a fresh process, so that heap grown
        # (and freed) by the 1 MiB runs does not hide the per-session cost.
        server = stop_checked(server, res)
        log("   idle sessions (fresh server)")
        again = start_server(peer, base, tsmtp_cmd, log_level)
        if isinstance(again, str):
            raise RuntimeError(again)
        server = again.server
        res["idle"] = scenarios.run_idle(server, plan, log)
    except Exception as exc:  # keep going with the other peers
        res["status"] = f"failed: {type(exc).__name__}: {exc}"[:300]
        log(traceback.format_exc())
    finally:
        stop_checked(server, res)
        scenarios.clear_new(maildir)
    if maildir is not None:
        res["store_check"] = check.as_dict()
        if check.mismatches:
            log(f"   MAILDIR MISMATCH: {check.mismatches}")
    return res


def main() -> int:
    args = parse_args()
    plan = scenarios.quick_plan() if args.quick else scenarios.full_plan()
    budget = args.budget if args.budget is not None else (600.0 if args.quick else 1500.0)
    nofile = raise_nofile()
    load_start = loadavg()
    t0 = time.monotonic()
    if not args.skip_install:
        install()
    peerdefs.WORK.mkdir(parents=True, exist_ok=True)
    tsmtp_cmd = peerdefs.tsmtp_command()
    log(f"== tsmtp command: {' '.join(tsmtp_cmd[0]) if tsmtp_cmd else 'not found'}")
    log(f"== RLIMIT_NOFILE soft limit: {nofile}")

    results: dict[str, dict[str, Any]] = {}
    for peer in select_peers(args.peers):
        if time.monotonic() - t0 > budget:
            results[peer.name] = {"tsmtp": peer.is_tsmtp, "status": "n/a: skipped (time budget)"}
            continue
        results[peer.name] = bench_peer(peer, plan, tsmtp_cmd, args.tsmtp_log_level)

    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "mode": "quick (smoke test)" if args.quick else "full",
        "runs": plan.runs,
        "duration_s": time.monotonic() - t0,
        "machine": {
            **report.machine_facts(),
            "load average at start / end": f"{load_start} / {loadavg()}",
        },
        "versions": report.peer_versions(tsmtp_cmd),
        "scenarios": {s.key: s.title for s in plan.throughput},
        "latency_count": plan.latency_count,
        "idle_counts": list(plan.idle_counts),
    }
    text = report.render(meta, results)
    print()
    print(text)
    args.out.write_text(text)
    raw = peerdefs.WORK / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"
    raw.write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str))
    log(f"== report written to {args.out}; raw data in {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
