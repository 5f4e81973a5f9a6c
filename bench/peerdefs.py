"""The servers under test and how to start each one on a loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import haraka_conf
from procs import Server

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = Path(os.environ.get("BENCH_WORK", HERE / ".work"))
DOMAINS = ("example.com",)
HOSTNAME = "bench.local"
SMTP_SINK = "/usr/sbin/smtp-sink"
AIOSMTPD_PY = WORK / "aiosmtpd-venv" / "bin" / "python"
HARAKA_JS = WORK / "haraka-node" / "node_modules" / "Haraka" / "bin" / "haraka"


@dataclass(frozen=True)
class Peer:
    name: str  # unique label used in the report
    family: str  # smtp-sink | aiosmtpd | haraka | tsmtp
    store: str  # none | discard | maildir
    nodes: int = 1

    @property
    def is_tsmtp(self) -> bool:
        return self.family == "tsmtp"


ALL_PEERS: tuple[Peer, ...] = (
    Peer("smtp-sink", "smtp-sink", "none"),
    Peer("aiosmtpd discard", "aiosmtpd", "discard"),
    Peer("aiosmtpd maildir", "aiosmtpd", "maildir"),
    Peer("Haraka discard", "haraka", "discard"),
    Peer("Haraka maildir", "haraka", "maildir"),
    Peer("Haraka x2 discard", "haraka", "discard", nodes=2),
    Peer("Haraka x2 maildir", "haraka", "maildir", nodes=2),
    Peer("tsmtp discard", "tsmtp", "discard"),
    Peer("tsmtp maildir", "tsmtp", "maildir"),
    Peer("tsmtp x2 discard", "tsmtp", "discard", nodes=2),
    Peer("tsmtp x2 maildir", "tsmtp", "maildir", nodes=2),
)


@dataclass
class Launch:
    server: Server
    maildir: Path | None  # Maildir root whose new/ is counted, if any


TMPFS = Path(os.environ.get("BENCH_TMPFS", "/dev/shm"))


def tmpfs_dir(name: str) -> Path | None:
    """A fresh directory on tmpfs (``BENCH_TMPFS``, default /dev/shm), or None if unusable."""
    if not TMPFS.is_dir() or not os.access(TMPFS, os.W_OK):
        return None
    path = TMPFS / f"tsmtp-bench-{os.getpid()}" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def slug(peer: Peer) -> str:
    return peer.name.lower().replace(" ", "-")


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
        os.sync()  # the deletions reach the disk now, not during the next measurement
    path.mkdir(parents=True)
    return path


# --- smtp-sink ---------------------------------------------------------------


def launch_sink(peer: Peer, port: int, base: Path) -> Launch:
    argv = [SMTP_SINK]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]  # required when started as root
    argv += ["-m", "20000", f"127.0.0.1:{port}", "4096"]
    return Launch(Server(peer.name, argv, port, base / "server.log"), None)


# --- aiosmtpd ----------------------------------------------------------------


def launch_aiosmtpd(peer: Peer, port: int, base: Path) -> Launch:
    argv = [
        str(AIOSMTPD_PY),
        str(HERE / "peers" / "aiosmtpd_peer.py"),
        "--port", str(port),
        "--store", peer.store,
        "--domains", ",".join(DOMAINS),
        "--hostname", HOSTNAME,
    ]  # fmt: skip
    maildir = None
    if peer.store == "maildir":
        maildir = base / "maildir"
        argv += ["--maildir", str(maildir)]
    return Launch(Server(peer.name, argv, port, base / "server.log"), maildir)


# --- Haraka ------------------------------------------------------------------


def launch_haraka(peer: Peer, port: int, base: Path) -> Launch:
    node = shutil.which("node") or "node"
    cfg = haraka_conf.write_config(
        base / "haraka",
        port=port,
        nodes=peer.nodes if peer.nodes > 1 else 0,
        store=peer.store,
        hostname=HOSTNAME,
    )
    maildir = base / "maildir" if peer.store == "maildir" else None
    env = {"BENCH_DOMAINS": ",".join(DOMAINS), "BENCH_MAILDIR": str(maildir or "")}
    argv = [node, str(HARAKA_JS), "-c", str(cfg)]
    return Launch(Server(peer.name, argv, port, base / "server.log", env=env, cwd=cfg), maildir)


# --- tsmtp -------------------------------------------------------------------


def _has_main(python: str, extra_path: str | None = None) -> bool:
    code = (
        "import importlib.util,sys;sys.exit(0 if importlib.util.find_spec('tsmtp.__main__') else 1)"
    )
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = extra_path + os.pathsep + env.get("PYTHONPATH", "")
    try:
        rc = subprocess.run([python, "-c", code], env=env, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return rc.returncode == 0


def tsmtp_command() -> tuple[list[str], dict[str, str]] | None:
    """How to start tsmtp: (argv prefix, extra env), or None if not runnable.

    Order: the repo venv's python -m tsmtp, this interpreter's -m tsmtp,
    a ``tsmtp`` script on PATH, and last the repo venv with src/ on
    PYTHONPATH (a checkout that is not installed).
    """
    pythons: list[str] = []
    venv_py = REPO / ".venv" / "bin" / "python"
    if venv_py.exists():
        pythons.append(str(venv_py))
    if sys.executable and sys.executable not in pythons:
        pythons.append(sys.executable)
    for py in pythons:
        if _has_main(py):
            return [py, "-m", "tsmtp"], {}
    script = shutil.which("tsmtp")
    if script:
        return [script], {}
    src = REPO / "src"
    if (src / "tsmtp" / "__main__.py").exists():
        for py in pythons:
            if _has_main(py, str(src)):
                return [py, "-m", "tsmtp"], {"PYTHONPATH": str(src)}
    return None


def write_tsmtp_config(
    cfg: Path, peer: Peer, port: int, maildir: Path | None, log_level: str, crowd: bool = False
) -> None:
    """Write tsmtp's config dir; ``crowd``: per-address limits for everyone, no other tuning."""
    fresh_dir(cfg)
    lines = [f'hostname = "{HOSTNAME}"']
    if peer.nodes > 1:
        lines.append(f"nodes = {peer.nodes}")
    lines.append(f'log_level = "{log_level}"')
    lines += ["", "[[listen]]", f'address = "127.0.0.1:{port}"', "", "[limits]"]
    if crowd:
        # The crowd comes from 500 loopback addresses: the per-address limits apply to them
        # as they would on the internet, and every other limit keeps tsmtp's default.
        lines.append("exempt_networks = []")
    else:
        # Every benchmark client connects from 127.0.0.1.
        lines += ["max_connections = 20000", "max_connections_per_ip = 20000"]
    lines.append("")
    (cfg / "smtp.toml").write_text("\n".join(lines))
    queue = "queue.maildir" if peer.store == "maildir" else "queue.discard"
    (cfg / "plugins").write_text(f"rcpt_to.in_host_list\n{queue}\n")
    (cfg / "host_list").write_text("".join(f"{d}\n" for d in DOMAINS))
    if maildir is not None:
        (cfg / "queue.maildir.toml").write_text(f'path = "{maildir}"\n')


def launch_tsmtp(
    peer: Peer,
    port: int,
    base: Path,
    command: tuple[list[str], dict[str, str]],
    log_level: str,
    crowd: bool = False,
) -> Launch:
    maildir = base / "maildir" if peer.store == "maildir" else None
    cfg = base / "tsmtp-config"
    write_tsmtp_config(cfg, peer, port, maildir, log_level, crowd)
    prefix, env = command
    argv = [*prefix, "run", "--config", str(cfg)]
    return Launch(Server(peer.name, argv, port, base / "server.log", env=env, cwd=base), maildir)


def crowd_eligible(peer: Peer) -> bool:
    """The hostile-crowd scenario runs on single-process Maildir peers (it counts new/)."""
    return peer.store == "maildir" and peer.nodes == 1


def peer_available(peer: Peer, tsmtp_cmd: object) -> str | None:
    """None if the peer can be started, else the reason it cannot."""
    if peer.family == "smtp-sink" and not os.access(SMTP_SINK, os.X_OK):
        return f"{SMTP_SINK} missing"
    if peer.family == "aiosmtpd" and not AIOSMTPD_PY.exists():
        return "aiosmtpd venv missing"
    if peer.family == "haraka" and not HARAKA_JS.exists():
        return "Haraka not installed"
    if peer.family == "haraka" and not shutil.which("node"):
        return "node missing"
    if peer.is_tsmtp and tsmtp_cmd is None:
        return "tsmtp not runnable (no tsmtp module or script)"
    return None
