"""Generate a minimal Haraka configuration directory for the benchmark.

Layout written under ``root`` (passed to ``haraka -c root``)::

    config/smtp.ini        listen address, nodes
    config/plugins         bench_rdns, bench_rcpt, bench_discard|bench_maildir
    config/log.ini         level=warn (no per-connection log lines)
    config/me              server name
    config/connection.ini  session limits (complete: Haraka does not merge it)
    plugins/*.js           the bench plugins below (written at run time)

The plugins keep Haraka off the network: ``bench_rdns`` answers the
reverse-DNS hook itself, and no other lookup plugin is loaded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

RDNS_PLUGIN = """\
// Answer the reverse-DNS hook locally so that no DNS query is made.
exports.hook_lookup_rdns = function (next, connection) {
    next(OK, 'localhost')
}
"""

RCPT_PLUGIN = """\
// Accept a recipient when its domain is listed in BENCH_DOMAINS.
const domains = new Set(
    (process.env.BENCH_DOMAINS || 'example.com')
        .split(',').map((d) => d.trim().toLowerCase()).filter(Boolean),
)

exports.hook_rcpt = function (next, connection, params) {
    const rcpt = params[0]
    const host = (rcpt && rcpt.host ? rcpt.host : '').toLowerCase()
    if (domains.has(host)) return next(OK)
    next(DENY, 'relaying denied')
}
"""

DISCARD_PLUGIN = """\
// Acknowledge every message and keep nothing.
exports.hook_queue = function (next, connection) {
    next(OK, 'discarded')
}
"""

MAILDIR_PLUGIN = """\
// Deliver to a Maildir: write tmp/NAME, fsync it, rename to new/NAME,
// fsync new/, and only then answer 250.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const root = process.env.BENCH_MAILDIR
let seq = 0

exports.register = function () {
    if (!root) throw new Error('BENCH_MAILDIR is not set')
    for (const sub of ['tmp', 'new', 'cur']) {
        fs.mkdirSync(path.join(root, sub), { recursive: true })
    }
}

function fsyncDir(dir, done) {
    fs.open(dir, 'r', (err, fd) => {
        if (err) return done(err)
        fs.fsync(fd, (syncErr) => {
            fs.close(fd, () => done(syncErr))
        })
    })
}

exports.hook_queue = function (next, connection) {
    const txn = connection.transaction
    const name = `${Date.now()}.P${process.pid}Q${seq++}.${os.hostname()}`
    const tmpPath = path.join(root, 'tmp', name)
    const newPath = path.join(root, 'new', name)
    let answered = false
    const fail = (err) => {
        if (answered) return
        answered = true
        connection.logerror(`maildir: ${err.message}`)
        next(DENYSOFT, 'maildir write failed')
    }
    fs.open(tmpPath, 'wx', 0o600, (err, fd) => {
        if (err) return fail(err)
        const ws = fs.createWriteStream(null, { fd, autoClose: false })
        ws.on('error', (e) => fs.close(fd, () => fail(e)))
        ws.on('finish', () => {
            fs.fsync(fd, (syncErr) => {
                fs.close(fd, (closeErr) => {
                    if (syncErr || closeErr) return fail(syncErr || closeErr)
                    fs.rename(tmpPath, newPath, (renErr) => {
                        if (renErr) return fail(renErr)
                        fsyncDir(path.join(root, 'new'), (dirErr) => {
                            if (dirErr) return fail(dirErr)
                            answered = true
                            next(OK, name)
                        })
                    })
                })
            })
        })
        txn.message_stream.pipe(ws, { line_endings: '\\r\\n', dot_stuffed: false })
    })
}
"""

# Haraka reads connection.ini whole (no merge with its shipped copy), so
# every section the core uses is spelled out here.
CONNECTION_INI = """\
[main]
spool_after=-1
strict_rfc1869=false
smtputf8=true

[haproxy]
enabled=false

[headers]
add_received=true
clean_auth_results=true
show_version=true
max_lines=1000
max_received=100

[max]
bytes=67108864
mime_parts=1000
line_length=512
data_line_length=992

[message]
helo=bench peer ready
close=bye

[uuid]
banner_chars=6
deny_chars=0
"""

PLUGIN_SOURCES = {
    "bench_rdns": RDNS_PLUGIN,
    "bench_rcpt": RCPT_PLUGIN,
    "bench_discard": DISCARD_PLUGIN,
    "bench_maildir": MAILDIR_PLUGIN,
}


def write_config(root: Path, *, port: int, nodes: int, store: str, hostname: str) -> Path:
    """(Re)create a Haraka config dir at ``root`` and return it."""
    if root.exists():
        shutil.rmtree(root)
    cfg = root / "config"
    plugins = root / "plugins"
    cfg.mkdir(parents=True)
    plugins.mkdir()
    for name, src in PLUGIN_SOURCES.items():
        (plugins / f"{name}.js").write_text(src)

    queue_plugin = "bench_maildir" if store == "maildir" else "bench_discard"
    (cfg / "plugins").write_text(f"bench_rdns\nbench_rcpt\n{queue_plugin}\n")
    (cfg / "smtp.ini").write_text(
        "[main]\n"
        f"listen=127.0.0.1:{port}\n"
        f"nodes={nodes}\n"
        "inactivity_timeout=600\n"
        "graceful_shutdown=false\n"
        "force_shutdown_timeout=2\n"
    )
    (cfg / "log.ini").write_text("[main]\nlevel=warn\ntimestamps=false\nformat=default\n")
    (cfg / "me").write_text(f"{hostname}\n")
    (cfg / "connection.ini").write_text(CONNECTION_INI)
    (cfg / "plugin_timeout").write_text("60\n")
    (root / "queue").mkdir()
    return root
