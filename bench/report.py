"""Machine facts, peer versions, and the Markdown report."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

import peerdefs

SINK = "smtp-sink"


def _cmd(argv: list[str], env: dict[str, str] | None = None) -> str:
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=full_env)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (out.stdout or out.stderr).strip() or "?"


def machine_facts() -> dict[str, str]:
    model, mhz = "?", "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "model name" and model == "?":
                model = val.strip()
            if key.strip() == "cpu MHz" and mhz == "?":
                mhz = val.strip()
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) // 1024} MiB"
    except OSError:
        pass
    return {
        "cpu": model,
        "cpu MHz": mhz,
        "nproc": _cmd(["nproc"]),
        "memory": mem,
        "uname -a": _cmd(["uname", "-a"]),
        "python (bench)": platform.python_version(),
    }


def peer_versions(tsmtp_cmd: tuple[list[str], dict[str, str]] | None) -> dict[str, str]:
    aiosmtpd_code = (
        "import sys, aiosmtpd; print(aiosmtpd.__version__, 'on Python', sys.version.split()[0])"
    )
    versions = {
        "postfix (smtp-source, smtp-sink)": _cmd(["dpkg-query", "-W", "-f=${Version}", "postfix"]),
        "aiosmtpd": _cmd([str(peerdefs.AIOSMTPD_PY), "-c", aiosmtpd_code]),
        "node": _cmd(["node", "--version"]),
    }
    pkg = peerdefs.HARAKA_JS.parent.parent / "package.json"
    try:
        versions["Haraka"] = json.loads(pkg.read_text())["version"]
    except (OSError, ValueError, KeyError):
        versions["Haraka"] = "?"
    if tsmtp_cmd is None:
        versions["tsmtp"] = "not runnable"
    else:
        prefix, env = tsmtp_cmd
        code = (
            "import sys,importlib.metadata as m\n"
            "try: v=m.version('tsmtp')\n"
            "except Exception: v='(not installed: source tree)'\n"
            "import trio; print(v, 'trio', trio.__version__, 'on Python', sys.version.split()[0])"
        )
        if prefix[-2:] == ["-m", "tsmtp"]:
            versions["tsmtp"] = _cmd([prefix[0], "-c", code], env)
        else:
            versions["tsmtp"] = "(script) " + prefix[0]
        rev = _cmd(["git", "-C", str(peerdefs.REPO), "rev-parse", "--short", "HEAD"])
        if rev != "?" and "fatal" not in rev:
            versions["tsmtp"] += f", git {rev}"
    return versions


# --- formatting ----------------------------------------------------------------------


def fmt(v: float | None, digits: int = 0) -> str:
    return "n/a" if v is None else f"{v:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _rate(res: dict[str, Any], key: str) -> float | None:
    s = res.get(key)
    return s.get("rate") if isinstance(s, dict) else None


def throughput_table(results: dict[str, dict[str, Any]], titles: dict[str, str]) -> str:
    sink = results.get(SINK, {})
    keys = list(titles)
    header = ["peer"]
    for k in keys:
        header += [f"{k.upper()} msgs/s", "vs sink"]
    header.append("msgs per timed run (" + "/".join(k.upper() for k in keys) + ")")
    rows = []
    for name, res in results.items():
        row = [name]
        if res.get("status") != "ok":
            row += ["n/a", ""] * len(keys) + [""]
            rows.append(row)
            continue
        for k in keys:
            r = _rate(res, k)
            row += [fmt(r), ratio(r, _rate(sink, k))]
        row.append("/".join(str(res.get(k, {}).get("count", "-")) for k in keys))
        rows.append(row)
    return table(header, rows)


def _idle(res: dict[str, Any], n: str) -> str:
    entry = res.get("idle", {}).get(n)
    if not entry or "kib_per_conn" not in entry:
        return "n/a"
    text = f"{entry['kib_per_conn']:.1f}"
    if entry.get("failed"):
        text += f" ({entry['opened']}/{entry['wanted']} open)"
    return text


def _store(res: dict[str, Any]) -> str:
    chk = res.get("store_check")
    if not chk:
        return "-"
    if chk["mismatches"]:
        return f"MISMATCH ({len(chk['mismatches'])})"
    return f"ok {chk['stored']}/{chk['acked']}"


def resources_table(results: dict[str, dict[str, Any]], idle_counts: tuple[int, ...]) -> str:
    sink_p50 = results.get(SINK, {}).get("latency", {}).get("p50_ms")
    header = ["peer", "p50 ms", "p99 ms", "p50 vs sink"]
    header += [f"KiB/conn @{n}" for n in idle_counts]
    header += ["CPU s/1k msgs (S1)", "Maildir check"]
    rows = []
    for name, res in results.items():
        if res.get("status") != "ok":
            rows.append([name] + ["n/a"] * (len(header) - 1))
            continue
        lat = res.get("latency", {})
        s1 = res.get("s1", {})
        rows.append(
            [
                name,
                fmt(lat.get("p50_ms"), 3),
                fmt(lat.get("p99_ms"), 3),
                ratio(lat.get("p50_ms"), sink_p50),
            ]
            + [_idle(res, str(n)) for n in idle_counts]
            + [fmt(s1.get("cpu_per_1k"), 3), _store(res)]
        )
    return table(header, rows)


def tsmtp_ratio_table(results: dict[str, dict[str, Any]], keys: list[str]) -> str:
    ts = [n for n, r in results.items() if r.get("tsmtp")]
    others = [n for n, r in results.items() if not r.get("tsmtp")]
    header = ["tsmtp variant", "scenario", *others]
    rows = []
    for t in ts:
        for k in keys:
            mine = _rate(results[t], k) if results[t].get("status") == "ok" else None
            rows.append([t, k.upper()] + [
                ratio(mine, _rate(results[o], k) if results[o].get("status") == "ok" else None)
                for o in others
            ])  # fmt: skip
    return table(header, rows)


# --- hostile crowd ---------------------------------------------------------------------

CROWD_TARGET = 0.90  # legitimate rate under a crowd, as a fraction of the rate with none
#: A round in which other processes used more than this share of the server's CPU in
#: either window measured the machine rather than the server; such rounds count only
#: when no round was quiet.
QUIET_LIMIT = 0.10


def _others(entry: dict[str, Any]) -> float | None:
    shares = [entry[w].get("others_on_server_cpu") for w in ("baseline", "crowded")]
    known = [s for s in shares if s is not None]
    return max(known) if known else None


def _counted(rounds: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """The rounds the figures come from, and whether they are quiet ones."""
    good = _good(rounds)
    quiet = [r for r in good if (_others(r) or 0.0) <= QUIET_LIMIT]
    return (quiet, True) if quiet else (good, False)


def _crowd_levels(res: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    levels: dict[str, list[dict[str, Any]]] = (res.get("crowd") or {}).get("levels", {})
    return levels


def _good(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rounds if r.get("ok") and "crowded" in r]


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _crowd_rates(rounds: list[dict[str, Any]], window: str) -> float | None:
    return _median([r[window]["rate"] for r in _counted(rounds)[0]])


def _crowd_store(rounds: list[dict[str, Any]]) -> str:
    stores = [r["store"] for r in rounds if r.get("store")]
    if not stores:
        return "-"
    acked = sum(s["acked"] for s in stores)
    stored = sum(s["stored"] for s in stores)
    bad = any(s["acked"] != s["stored"] for s in stores)
    return f"MISMATCH {stored}/{acked}" if bad else f"{stored}/{acked}"


def _delta(entry: dict[str, Any], key: str) -> int:
    return int(entry["crowd_end"][key]) - int(entry["crowd_start"][key])


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def crowd_table(results: dict[str, dict[str, Any]]) -> str:
    header = [
        "peer",
        "crowd",
        "msgs/s without",
        "msgs/s with",
        "with / without",
        f">= {CROWD_TARGET:.0%}",
        "p50 / p99 ms with",
        "slowest second with",
        "failed attempts with",
        "crowd held (window start / end)",
        "crowd closed by server / refused",
        "CPU server without / with",
        "CPU legit / crowd clients",
        "others on server CPU",
        "rounds counted",
        "server RSS MiB with",
        "Maildir stored/acked",
    ]
    rows = []
    for name, res in results.items():
        for key, rounds in _crowd_levels(res).items():
            good, quiet = _counted(rounds)
            if not good:
                rows.append([name, key, "n/a"] + [""] * (len(header) - 4) + [_crowd_store(rounds)])
                continue
            ratios = [r["ratio"] for r in good if r.get("ratio") is not None]
            share = _median(ratios)
            shown = "n/a" if share is None else f"{share:.2f}x"
            if len(ratios) > 1:
                shown += f" ({min(ratios):.2f}-{max(ratios):.2f})"
            verdict = "n/a" if share is None else "yes" if share >= CROWD_TARGET else "NO"
            crowded = [r["crowded"] for r in good]
            rss = _median([c["rss_kib"] for c in crowded])
            rows.append(
                [
                    name,
                    key,
                    fmt(_crowd_rates(rounds, "baseline")),
                    fmt(_crowd_rates(rounds, "crowded")),
                    shown,
                    verdict,
                    f"{fmt(_median([c['p50_ms'] for c in crowded]), 1)} / "
                    f"{fmt(_median([c['p99_ms'] for c in crowded]), 1)}",
                    fmt(min((min(c["per_second"], default=0) for c in crowded), default=None)),
                    str(sum(sum(c["failures"].values()) for c in crowded)),
                    f"{min(r['crowd_start']['holding'] for r in good)} / "
                    f"{min(r['crowd_end']['holding'] for r in good)}",
                    f"{sum(_delta(r, 'server_closed') for r in good)} / "
                    + str(
                        sum(
                            _delta(r, k)
                            for r in good
                            for k in ("refused", "connect_failed", "setup_failed")
                        )
                    ),
                    f"{_share(_median([r['baseline']['server_cpu'] for r in good]))} / "
                    f"{_share(_median([c['server_cpu'] for c in crowded]))}",
                    f"{_share(_median([c['legit_cpu'] for c in crowded]))} / "
                    f"{_share(_median([c.get('crowd_cpu') for c in crowded]))}",
                    _share(_median([_others(r) for r in good])),
                    f"{len(good)} of {len(rounds)}" + ("" if quiet else " (none quiet)"),
                    fmt(rss / 1024 if rss else None),
                    _crowd_store(rounds),
                ]
            )
    return table(header, rows)


def crowd_failures(results: dict[str, dict[str, Any]]) -> list[str]:
    """How the legitimate clients' failed attempts failed, per peer and level."""
    out = []
    for name, res in results.items():
        for key, rounds in _crowd_levels(res).items():
            kinds: dict[str, int] = {}
            for r in _good(rounds):
                for window in ("baseline", "crowded"):
                    for kind, n in r[window]["failures"].items():
                        label = f"{kind} ({'with' if window == 'crowded' else 'without'} crowd)"
                        kinds[label] = kinds.get(label, 0) + n
            if kinds:
                text = ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items()))
                out.append(f"{name}, crowd {key}: {text}")
    return out


def crowd_ratio_table(results: dict[str, dict[str, Any]]) -> str:
    crowded = {n: _crowd_levels(r) for n, r in results.items() if _crowd_levels(r)}
    ts = [n for n in crowded if results[n].get("tsmtp")]
    others = [n for n in crowded if not results[n].get("tsmtp")]
    levels = sorted({int(k) for lv in crowded.values() for k in lv})
    header = ["tsmtp variant", "crowd", *others]
    rows = []
    for t in ts:
        for level in levels:
            for window, label in (("baseline", f"without ({level} run)"), ("crowded", str(level))):
                mine = _crowd_rates(crowded[t].get(str(level), []), window)
                rows.append(
                    [t, label]
                    + [
                        ratio(mine, _crowd_rates(crowded[o].get(str(level), []), window))
                        for o in others
                    ]
                )
    return table(header, rows)


def crowd_section(meta: dict[str, Any], results: dict[str, dict[str, Any]]) -> list[str]:
    crowd = meta["crowd"]
    lines = [
        "## Hostile crowd (legitimate messages/s while slow connections are held)",
        "",
        f"{crowd['sessions']} legitimate clients on 127.0.0.1 send 1 KiB messages, one per "
        f"connection. On a fresh server per round ({crowd['rounds']} per row, medians shown): "
        f"a {crowd['seconds']:.0f} s window without a crowd, then one while a crowd of slow "
        f"connections from {crowd['addresses']} other loopback addresses is held open (a "
        "third trickle a command one byte every 2 s, a third go silent after EHLO, a third "
        'trickle a DATA body; closed ones reconnect after about 1 s). "with / without" is '
        "the median of the rounds' ratios (range in brackets), against a target of "
        f">= {CROWD_TARGET:.0%}. Only quiet rounds count, those in which other processes "
        f"used at most {QUIET_LIMIT:.0%} of the server's CPU in both windows (\"others on "
        'server CPU", the larger of the two), unless no round was quiet. Every 250 the '
        "legitimate clients received (warm-up "
        "included) must be a file in maildir/new once the crowd has gone. The slowest second: "
        "the fewest 250s in one whole second of a window with the crowd (a lock-out shows "
        "as 0). CPU: share of one "
        "core over the window, used by the server (process tree), the legitimate clients "
        "and the crowd client.",
        "",
    ]
    setups = {
        json.dumps(r["crowd"].get("setup"), sort_keys=True)
        for r in results.values()
        if r.get("crowd")
    }
    for text in sorted(setups):
        setup = json.loads(text) or {}
        where = "tmpfs" if setup.get("maildir_on_tmpfs") else "the bench's disk"
        cpus = (
            f"the server on CPU {setup['server_cpus']}, the clients on CPU {setup['client_cpus']}"
            if setup.get("server_cpus")
            else "no CPU pinning (fewer than 2 CPUs)"
        )
        lines += [f"Set-up: Maildir on {where}; {cpus}.", ""]
    lines += [crowd_table(results), ""]
    failures = crowd_failures(results)
    if failures:
        lines += ["Failed attempts of the legitimate clients, by kind:", ""]
        lines += [f"- {f}" for f in failures] + [""]
    with_crowd = [r for r in results.values() if r.get("crowd")]
    if any(r.get("tsmtp") for r in with_crowd) and not all(r.get("tsmtp") for r in with_crowd):
        lines += [
            "## tsmtp relative to each peer under the crowd (tsmtp msgs/s / peer msgs/s)",
            "",
            crowd_ratio_table(results),
            "",
        ]
    return lines


def problems(results: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for name, res in results.items():
        if res.get("status") != "ok":
            out.append(f"{name}: {res.get('status')}")
            continue
        for key, val in res.items():
            if isinstance(val, dict) and val.get("errors"):
                out.append(f"{name} {key}: " + "; ".join(val["errors"])[:300])
            if isinstance(val, dict) and val.get("ok") is False and val.get("error"):
                out.append(f"{name} {key}: {val['error']}"[:300])
        chk = res.get("store_check")
        if chk and chk["mismatches"]:
            out.append(f"{name} Maildir MISMATCH: " + "; ".join(chk["mismatches"])[:300])
        for key, rounds in _crowd_levels(res).items():
            for i, entry in enumerate(rounds, 1):
                if not entry.get("ok"):
                    out.append(
                        f"{name} crowd {key} round {i}: {entry.get('error', 'failed')}"[:300]
                    )
                if entry.get("crowd_error"):
                    out.append(f"{name} crowd {key} round {i}: {entry['crowd_error']}")
            if _crowd_store(rounds).startswith("MISMATCH"):
                out.append(f"{name} crowd {key}: Maildir {_crowd_store(rounds)}")
        for n, entry in res.get("idle", {}).items():
            if entry.get("failed"):
                out.append(
                    f"{name} idle {n}: only {entry['opened']} of {entry['wanted']} sessions opened"
                    + (f" ({entry['error']})" if entry.get("error") else "")
                )
    return out


def render(meta: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    titles: dict[str, str] = meta["scenarios"]
    keys = list(titles)
    idle_counts = tuple(meta["idle_counts"])
    lines = [
        "# tsmtp peer benchmark",
        "",
        f"- Date: {meta['date']}",
        f"- Mode: {meta['mode']} ({meta['runs']} timed run(s) per figure, median shown)",
        f"- Duration: {meta['duration_s']:.0f} s",
        "",
        "## Machine",
        "",
    ]
    lines += [f"- {k}: `{v}`" for k, v in meta["machine"].items()]
    lines += ["", "## Versions", ""]
    lines += [f"- {k}: {v}" for k, v in meta["versions"].items()]
    lines += ["", "## Scenarios", ""]
    if meta.get("crowd"):
        c = meta["crowd"]
        lines.append(
            f"- Hostile crowd: {', '.join(str(n) for n in c['levels'] if n)} slow connections "
            f"from {c['addresses']} loopback addresses; {c['sessions']} legitimate clients, "
            f"{c['seconds']:.0f} s windows without and with, {c['rounds']} round(s) "
            "(see its section)"
        )
    if not meta.get("standard", True):
        lines += ["", *crowd_section(meta, results), "## Problems", ""]
        probs = problems(results)
        lines += [f"- {p}" for p in probs] if probs else ["- none"]
        lines.append("")
        return "\n".join(lines)
    lines += [f"- {k.upper()}: {v}" for k, v in titles.items()]
    lines += [
        f"- Latency: {meta['latency_count']} sequential MAIL/RCPT/DATA transactions (1 KiB) on one "
        "session, own client, no pipelining; time from MAIL to the 250 after the final dot",
        f"- Idle: {' and '.join(str(n) for n in idle_counts)} sessions held open after EHLO; "
        "server RSS growth (VmRSS summed over the process tree) per session",
        "- CPU: server user+system seconds (process tree) over the timed S1 runs, "
        "per 1000 messages",
        "- Maildir check: every message acknowledged with 250 must be a file in maildir/new",
        "",
        "## Throughput (messages/s; ratio to smtp-sink in this run)",
        "",
        throughput_table(results, titles),
        "",
        "## Latency, memory, CPU, storage",
        "",
        resources_table(results, idle_counts),
        "",
        "## tsmtp relative to each peer (tsmtp msgs/s / peer msgs/s)",
        "",
        tsmtp_ratio_table(results, keys),
        "",
    ]
    if meta.get("crowd"):
        lines += crowd_section(meta, results)
    lines += ["## Problems", ""]
    probs = problems(results)
    lines += [f"- {p}" for p in probs] if probs else ["- none"]
    lines.append("")
    return "\n".join(lines)
