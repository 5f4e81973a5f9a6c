"""The benchmark scenarios, run against one started server."""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import load
import procs
from procs import Server


@dataclass(frozen=True)
class Throughput:
    key: str
    title: str
    sessions: int
    length: int
    reuse: bool
    probe: int  # messages in the untimed warm-up run that sizes the real ones
    lo: int  # bounds on the messages per timed run
    hi: int


@dataclass(frozen=True)
class CrowdPlan:
    levels: tuple[int, ...]  # hostile connections
    seconds: float  # each measuring window of the legitimate clients
    warmup: float  # untimed legitimate mail on the fresh server, before the baseline
    sessions: int  # legitimate clients
    addresses: int  # loopback source addresses the crowd is spread over
    rounds: int = 1  # paired measurements per level, each on a fresh server


@dataclass(frozen=True)
class Plan:
    runs: int
    target_seconds: float  # wanted length of one timed smtp-source run
    throughput: tuple[Throughput, ...]
    latency_count: int
    latency_warmup: int
    idle_counts: tuple[int, ...]
    source_timeout: float
    idle_timeout: float
    crowd: CrowdPlan


def full_plan() -> Plan:
    return Plan(
        runs=3,
        target_seconds=3.0,
        throughput=(
            Throughput("s1", "1 KiB, 1 msg/conn, 20 sessions", 20, 1024, False, 400, 500, 25000),
            Throughput("s2", "1 KiB, reused conns, 20 sessions", 20, 1024, True, 1000, 1000, 70000),
            Throughput("s3", "1 MiB, 1 msg/conn, 10 sessions", 10, 1 << 20, False, 20, 50, 1500),
        ),
        latency_count=200,
        latency_warmup=20,
        idle_counts=(1000, 10000),
        source_timeout=120.0,
        idle_timeout=120.0,
        crowd=CrowdPlan((1500, 5000), seconds=10.0, warmup=2.0, sessions=10, addresses=500),
    )


def quick_plan() -> Plan:
    return Plan(
        runs=1,
        target_seconds=0.5,
        throughput=(
            Throughput("s1", "1 KiB, 1 msg/conn, 20 sessions", 20, 1024, False, 100, 200, 2000),
            Throughput("s2", "1 KiB, reused conns, 20 sessions", 20, 1024, True, 200, 400, 4000),
            Throughput("s3", "1 MiB, 1 msg/conn, 10 sessions", 10, 1 << 20, False, 10, 20, 100),
        ),
        latency_count=50,
        latency_warmup=5,
        idle_counts=(100, 1000),
        source_timeout=60.0,
        idle_timeout=60.0,
        crowd=CrowdPlan((1500, 5000), seconds=4.0, warmup=1.0, sessions=10, addresses=500),
    )


# --- Maildir bookkeeping ---------------------------------------------------------


def count_new(maildir: Path | None) -> int:
    if maildir is None:
        return 0
    try:
        return sum(1 for _ in os.scandir(maildir / "new"))
    except FileNotFoundError:
        return 0


def clear_new(maildir: Path | None) -> None:
    """Delete delivered files once a peer is done, and let the filesystem settle.

    Not between the runs of one peer: on a filesystem mounted with ``discard`` the journal
    commits after a mass delete are slow, which would charge the next run (and the next peer)
    for the previous one's clean-up.
    """
    if maildir is None:
        return
    try:
        entries = list(os.scandir(maildir / "new"))
    except FileNotFoundError:
        return
    for entry in entries:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
    os.sync()
    time.sleep(1.0)


@dataclass
class StoreCheck:
    """Messages acknowledged vs files that appeared in maildir/new."""

    acked: int = 0
    stored: int = 0
    mismatches: list[str] = field(default_factory=list)

    def record(self, label: str, acked: int, stored: int) -> None:
        self.acked += acked
        self.stored += stored
        if acked != stored:
            self.mismatches.append(f"{label}: acked {acked}, stored {stored}")

    def as_dict(self) -> dict[str, Any]:
        return {"acked": self.acked, "stored": self.stored, "mismatches": self.mismatches}


# --- runners -------------------------------------------------------------------------


Log = Callable[[str], None]


def _sized_count(spec: Throughput, probe: load.SourceRun, target: float) -> int:
    if not probe.ok or probe.rate <= 0:
        return spec.lo
    wanted = int(probe.rate * target)
    return max(spec.lo, min(spec.hi, wanted))


def run_throughput(
    server: Server, maildir: Path | None, spec: Throughput, plan: Plan, check: StoreCheck, log: Log
) -> dict[str, Any]:
    def one(count: int, label: str) -> load.SourceRun:
        before = count_new(maildir)
        res = load.smtp_source(
            server.port,
            sessions=spec.sessions,
            messages=count,
            length=spec.length,
            reuse=spec.reuse,
            timeout=plan.source_timeout,
        )
        if maildir is not None:
            stored = count_new(maildir) - before
            if res.ok:
                check.record(f"{spec.key} {label}", count, stored)
        time.sleep(0.3)
        return res

    probe = one(spec.probe, "warm-up")
    if not probe.ok:
        log(f"    {spec.key} warm-up failed: {probe.error}")
        return {"ok": False, "error": probe.error}
    count = _sized_count(spec, probe, plan.target_seconds)
    rates: list[float] = []
    errors: list[str] = []
    cpu0 = server.cpu_seconds()
    msgs = 0
    for i in range(plan.runs):
        res = one(count, f"run {i + 1}")
        if res.ok:
            rates.append(res.rate)
            msgs += count
            log(
                f"    {spec.key} run {i + 1}: {count} msgs in {res.seconds:.2f}s = {res.rate:.0f}/s"
            )
        else:
            errors.append(res.error)
            log(f"    {spec.key} run {i + 1} FAILED: {res.error}")
            if res.error.startswith("timeout") or not server.alive():
                break  # keep the whole run bounded in time
    cpu = server.cpu_seconds() - cpu0
    out: dict[str, Any] = {
        "ok": bool(rates) and not errors,
        "count": count,
        "rates": rates,
        "rate": statistics.median(rates) if rates else None,
        "errors": errors,
        "cpu_per_1k": cpu / msgs * 1000 if msgs else None,
    }
    return out


def run_latency(
    server: Server, maildir: Path | None, plan: Plan, check: StoreCheck, log: Log
) -> dict[str, Any]:
    p50s: list[float] = []
    p99s: list[float] = []
    errors: list[str] = []
    for i in range(plan.runs):
        before = count_new(maildir)
        res = load.latency(server.port, count=plan.latency_count, warmup=plan.latency_warmup)
        if maildir is not None:
            check.record(f"latency run {i + 1}", res.count, count_new(maildir) - before)
        if res.ok:
            p50s.append(res.p50_ms)
            p99s.append(res.p99_ms)
            log(f"    latency run {i + 1}: p50 {res.p50_ms:.3f} ms, p99 {res.p99_ms:.3f} ms")
        else:
            errors.append(res.error)
            log(f"    latency run {i + 1} FAILED: {res.error}")
    return {
        "ok": bool(p50s) and not errors,
        "p50_ms": statistics.median(p50s) if p50s else None,
        "p99_ms": statistics.median(p99s) if p99s else None,
        "errors": errors,
    }


def run_idle(server: Server, plan: Plan, log: Log) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in plan.idle_counts:
        time.sleep(1.0)
        base = server.rss_kib()
        idle = load.open_idle(server.port, n, plan.idle_timeout)
        try:
            time.sleep(1.0)
            loaded = server.rss_kib()
        finally:
            idle.close()
        entry: dict[str, Any] = {
            "wanted": n,
            "opened": idle.opened,
            "failed": idle.failed,
            "rss_before_kib": base,
            "rss_after_kib": loaded,
        }
        if idle.opened:
            entry["kib_per_conn"] = (loaded - base) / idle.opened
        if idle.error:
            entry["error"] = idle.error
        log(
            f"    idle {n}: opened {idle.opened}, failed {idle.failed}, "
            f"RSS {base} -> {loaded} KiB"
            + (f" = {entry['kib_per_conn']:.2f} KiB/conn" if idle.opened else "")
            + (f" ({idle.error})" if idle.error else "")
        )
        out[str(n)] = entry
    return out


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _window(server: Server, plan: CrowdPlan, crowd: load.CrowdProcess | None) -> dict[str, Any]:
    """One measuring window of the legitimate clients, and what it cost whom."""
    rss = server.rss_kib()
    cpu0, legit0 = server.cpu_seconds(), _own_cpu()
    crowd0 = crowd.cpu_seconds() if crowd else 0.0
    busy0 = procs.cpus_busy(server.cpus) if server.cpus else 0.0
    run = load.send_for(server.port, sessions=plan.sessions, seconds=plan.seconds)
    busy = procs.cpus_busy(server.cpus) - busy0 if server.cpus else None
    server_cpu = server.cpu_seconds() - cpu0
    # What else ran on the server's CPU (other work on the machine): a window where this
    # is large measured the machine, not the server.
    others = None if busy is None else max(0.0, busy - server_cpu) / plan.seconds
    # CPU figures are shares of one core over the window: the server's, the legitimate
    # clients' (this process) and the crowd client's.
    out: dict[str, Any] = {
        "rate": run.rate,
        "acked": run.acked,
        "acked_late": run.acked_late,
        "failures": run.failures,
        "p50_ms": statistics.median(run.samples_ms) if run.samples_ms else None,
        "p99_ms": load.percentile(run.samples_ms, 99) if run.samples_ms else None,
        "server_cpu": server_cpu / plan.seconds,
        "others_on_server_cpu": others,
        "legit_cpu": (_own_cpu() - legit0) / plan.seconds,
        "rss_kib": rss,
        # 250s in each whole second of the window: a lock-out shows as seconds near 0.
        "per_second": [
            sum(1 for at in run.acked_at if i <= at < i + 1) for i in range(int(plan.seconds))
        ],
    }
    if crowd is not None:
        out["crowd_cpu"] = (crowd.cpu_seconds() - crowd0) / plan.seconds
    return out


def run_crowd_round(
    server: Server, maildir: Path | None, plan: CrowdPlan, level: int, log: Log
) -> dict[str, Any]:
    """A baseline window, then a window while ``level`` hostile connections are held.

    On a fresh server: untimed warm-up mail, the baseline window with no crowd, then the
    crowd, and once every crowd slot has made its first attempt (and 1 s more) the crowd
    window. Pairing the two on one server cancels drift from whatever else the machine
    does. Every 250 the legitimate clients received must be a file in maildir/new once
    the crowd has gone.
    """
    before = count_new(maildir)
    warm = load.send_for(server.port, sessions=plan.sessions, seconds=plan.warmup)
    entry: dict[str, Any] = {"level": level, "ok": False}
    acked = warm.total_acked
    baseline = _window(server, plan, None)
    entry["baseline"] = baseline
    acked += baseline["acked"] + baseline["acked_late"]
    lifetime = 60.0 + plan.seconds + 120.0  # ready timeout, window, margin
    crowd = load.open_crowd(
        server.port,
        level,
        addresses=plan.addresses,
        lifetime=lifetime,
        log_path=server.log_path.with_name("crowd.log"),
    )
    try:
        if crowd.error:
            entry["error"] = f"crowd did not start: {crowd.error}"
            return entry
        entry["crowd_ready"] = crowd.ready
        time.sleep(1.0)  # refused slots are reconnecting by now
        entry["crowd_start"] = crowd.stats()
        crowded = _window(server, plan, crowd)
        entry["crowd_end"] = crowd.stats()
        entry["crowded"] = crowded
        acked += crowded["acked"] + crowded["acked_late"]
    finally:
        entry["crowd_done"] = crowd.close()
        if crowd.error:
            entry["crowd_error"] = crowd.error
    time.sleep(1.0)  # the server notices the crowd's closed connections
    stored = count_new(maildir) - before
    entry["ok"] = server.alive()
    if not entry["ok"]:
        entry["error"] = "server exited during the run"
    if maildir is not None:
        entry["store"] = {"acked": acked, "stored": stored}
    base_rate, rate = baseline["rate"], crowded["rate"]
    entry["ratio"] = rate / base_rate if base_rate else None
    held = entry["crowd_end"]["holding"]
    failed = crowded["failures"]
    log(
        f"    crowd {level}: {rate:.0f}/s vs {base_rate:.0f}/s without"
        + (f" = {entry['ratio']:.2f}" if entry["ratio"] is not None else "")
        + f", crowd held {held}/{level}"
        + (f", failures {failed}" if failed else "")
        + (f", Maildir {stored}/{acked}" if maildir is not None else "")
    )
    return entry
