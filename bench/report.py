"""Machine facts, peer versions, and the Markdown report."""

from __future__ import annotations

import json
import os
import platform
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
        "## Problems",
        "",
    ]
    probs = problems(results)
    lines += [f"- {p}" for p in probs] if probs else ["- none"]
    lines.append("")
    return "\n".join(lines)
