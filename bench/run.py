#!/usr/bin/env python3
"""Benchmark tsmtp against peer SMTP servers on loopback.

    python bench/run.py            # full run (3 timed runs per figure)
    python bench/run.py --quick    # smoke test: 1 run, small counts
    python bench/run.py --crowd    # also the hostile-crowd scenario (~4 min more)
    python bench/run.py --crowd-only

Installs the peers (bench/setup_peers.sh), then for each server in turn:
starts it on a fresh 127.0.0.1 port, drives it with Postfix's smtp-source
and with the bench's own clients, and stops it by its process group.
Prints the report and writes it to bench/RESULTS.md.
Only the standard library is needed to run this script.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
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
from procs import Server, free_port, raise_nofile, split_cpus  # noqa: E402


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
        "--crowd",
        action="store_true",
        help="also run the hostile-crowd scenario on the single-process Maildir peers",
    )
    ap.add_argument(
        "--crowd-only",
        action="store_true",
        help="run only the hostile-crowd scenario (implies --crowd)",
    )
    ap.add_argument(
        "--crowd-rounds",
        type=int,
        default=1,
        help="paired measurements (without, with the crowd) per crowd level (default 1)",
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


def select_peers(spec: str, crowd_only: bool) -> list[Peer]:
    wanted = [s.strip().lower() for s in spec.split(",") if s.strip()]
    if crowd_only:  # smtp-sink holds no connections worth comparing
        return [
            p
            for p in peerdefs.ALL_PEERS
            if peerdefs.crowd_eligible(p)
            and (not wanted or any(w in p.name.lower() for w in wanted))
        ]
    if not wanted:
        return list(peerdefs.ALL_PEERS)
    return [
        p
        for p in peerdefs.ALL_PEERS
        if p.family == "smtp-sink" or any(w in p.name.lower() for w in wanted)
    ]


def launch(
    peer: Peer, port: int, base: Path, tsmtp_cmd: Any, log_level: str, crowd: bool
) -> peerdefs.Launch:
    if peer.family == "smtp-sink":
        return peerdefs.launch_sink(peer, port, base)
    if peer.family == "aiosmtpd":
        return peerdefs.launch_aiosmtpd(peer, port, base)
    if peer.family == "haraka":
        return peerdefs.launch_haraka(peer, port, base)
    return peerdefs.launch_tsmtp(peer, port, base, tsmtp_cmd, log_level, crowd)


def start_server(
    peer: Peer,
    base: Path,
    tsmtp_cmd: Any,
    log_level: str,
    crowd: bool = False,
    cpus: frozenset[int] | None = None,
) -> peerdefs.Launch | str:
    """Start the peer on a fresh port; the Launch, or a status text on failure.

    ``crowd`` starts tsmtp with the hostile-crowd config (the other peers have one config);
    ``cpus`` confines the server's process tree to those CPUs.
    """
    port = free_port()
    started = launch(peer, port, base, tsmtp_cmd, log_level, crowd)
    server = started.server
    server.cpus = cpus
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


def bench_peer(
    peer: Peer,
    plan: scenarios.Plan,
    tsmtp_cmd: Any,
    log_level: str,
    *,
    standard: bool,
    crowd: bool,
) -> dict[str, Any]:
    res: dict[str, Any] = {"tsmtp": peer.is_tsmtp, "store": peer.store, "nodes": peer.nodes}
    why = peerdefs.peer_available(peer, tsmtp_cmd)
    if why:
        res["status"] = f"n/a: {why}"
        log(f"== {peer.name}: n/a ({why})")
        return res
    res["status"] = "ok"
    if standard:
        bench_standard(peer, plan, tsmtp_cmd, log_level, res)
    if crowd and peerdefs.crowd_eligible(peer):
        res["crowd"] = bench_crowd(peer, plan.crowd, tsmtp_cmd, log_level)
    return res


def bench_standard(
    peer: Peer, plan: scenarios.Plan, tsmtp_cmd: Any, log_level: str, res: dict[str, Any]
) -> None:
    """S1-S3, latency, idle sessions and CPU, into ``res``."""
    base = peerdefs.fresh_dir(peerdefs.WORK / "runs" / peerdefs.slug(peer))
    started = start_server(peer, base, tsmtp_cmd, log_level)
    if isinstance(started, str):
        res["status"] = started
        return
    server, maildir = started.server, started.maildir
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


def crowd_round(
    peer: Peer,
    base: Path,
    tsmtp_cmd: Any,
    log_level: str,
    cpus: tuple[frozenset[int], frozenset[int]] | None,
    plan: scenarios.CrowdPlan,
    level: int,
) -> dict[str, Any]:
    started = start_server(
        peer, base, tsmtp_cmd, log_level, crowd=True, cpus=cpus[0] if cpus else None
    )
    if isinstance(started, str):
        return {"level": level, "ok": False, "error": started}
    try:
        return scenarios.run_crowd_round(started.server, started.maildir, plan, level, log)
    except Exception as exc:  # keep going with the other rounds and peers
        log(traceback.format_exc())
        return {"level": level, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        started.server.stop()
        scenarios.clear_new(started.maildir)


def bench_crowd(
    peer: Peer, plan: scenarios.CrowdPlan, tsmtp_cmd: Any, log_level: str
) -> dict[str, Any]:
    """The crowd's rounds, each on a fresh server: the set-up used, and the rounds by level.

    The Maildir is on tmpfs when there is one, and the server runs on its own CPU, the
    bench's clients (this process and the crowd) on the others: on this VM the disk's
    fsync latency and the scheduler putting client and server on one core each swing the
    rate by tens of percent from one second to the next, which would drown what the crowd
    does to the server.
    """
    levels: dict[str, list[dict[str, Any]]] = {}
    base = peerdefs.fresh_dir(peerdefs.WORK / "runs" / f"{peerdefs.slug(peer)}-crowd")
    tmpfs = peerdefs.tmpfs_dir(f"{peerdefs.slug(peer)}-crowd")
    if tmpfs is not None:
        (base / "maildir").symlink_to(tmpfs, target_is_directory=True)
    cpus = split_cpus()
    own_cpus = os.sched_getaffinity(0)
    setup = {
        "maildir_on_tmpfs": tmpfs is not None,
        "server_cpus": sorted(cpus[0]) if cpus else None,
        "client_cpus": sorted(cpus[1]) if cpus else None,
    }
    try:
        if cpus:
            os.sched_setaffinity(0, cpus[1])  # the crowd process inherits it
        for level in plan.levels:
            rounds = levels.setdefault(str(level), [])
            for i in range(plan.rounds):
                log(f"   hostile crowd of {level}, round {i + 1} (fresh server)")
                rounds.append(crowd_round(peer, base, tsmtp_cmd, log_level, cpus, plan, level))
    finally:
        os.sched_setaffinity(0, own_cpus)
        if tmpfs is not None:
            shutil.rmtree(tmpfs, ignore_errors=True)
            with contextlib.suppress(OSError):
                tmpfs.parent.rmdir()
    return {"setup": setup, "levels": levels}


def main() -> int:
    args = parse_args()
    plan = scenarios.quick_plan() if args.quick else scenarios.full_plan()
    plan = dataclasses.replace(
        plan, crowd=dataclasses.replace(plan.crowd, rounds=max(1, args.crowd_rounds))
    )
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
    standard = not args.crowd_only
    crowd = args.crowd or args.crowd_only
    for peer in select_peers(args.peers, args.crowd_only):
        if time.monotonic() - t0 > budget:
            results[peer.name] = {"tsmtp": peer.is_tsmtp, "status": "n/a: skipped (time budget)"}
            continue
        results[peer.name] = bench_peer(
            peer, plan, tsmtp_cmd, args.tsmtp_log_level, standard=standard, crowd=crowd
        )

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
        "standard": standard,
        "scenarios": {s.key: s.title for s in plan.throughput} if standard else {},
        "latency_count": plan.latency_count,
        "idle_counts": list(plan.idle_counts),
        "crowd": dataclasses.asdict(plan.crowd) if crowd else None,
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
