#!/usr/bin/env bash
# Install the peer servers and the load generator used by bench/run.py.
# Idempotent: each step is skipped when its result is already present.
#
#   postfix  (Debian)  -> /usr/sbin/smtp-source, /usr/sbin/smtp-sink
#   aiosmtpd (PyPI)    -> bench/.work/aiosmtpd-venv
#   Haraka   (npm)     -> bench/.work/haraka-node/node_modules/Haraka
#
# The postfix daemon itself is never left running: package scripts are
# kept from starting services, and any master process is stopped after.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="${BENCH_WORK:-$HERE/.work}"
HARAKA_VERSION="${HARAKA_VERSION:-3.3.4}"
PYTHON="${PYTHON:-python3}"

mkdir -p "$WORK"

say() { printf '[setup] %s\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" != "0" ]; then
        say "not root: cannot apt-get install $1; install it by hand"
        return 1
    fi
}

install_postfix() {
    if [ -x /usr/sbin/smtp-source ] && [ -x /usr/sbin/smtp-sink ]; then
        say "smtp-source/smtp-sink present"
    else
        need_root postfix
        say "installing postfix (for smtp-source and smtp-sink)"
        # Keep maintainer scripts from starting the daemon.
        local policy=/usr/sbin/policy-rc.d created=""
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' > "$policy"
            chmod 755 "$policy"
            created=1
        fi
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y -q postfix >"$WORK/apt-postfix.log" 2>&1; then
            apt-get update -q >>"$WORK/apt-postfix.log" 2>&1
            apt-get install -y -q postfix >>"$WORK/apt-postfix.log" 2>&1
        fi
        [ -n "$created" ] && rm -f "$policy"
    fi
    stop_postfix_daemon
}

stop_postfix_daemon() {
    # Only acts on postfix's own master pid file; never matches by name.
    local pidfile=/var/spool/postfix/pid/master.pid
    if [ -s "$pidfile" ]; then
        local pid
        pid="$(tr -d ' \n' < "$pidfile")"
        if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then
            say "stopping postfix daemon (pid $pid)"
            postfix stop >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
        fi
    fi
}

install_aiosmtpd() {
    local venv="$WORK/aiosmtpd-venv"
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import aiosmtpd" 2>/dev/null; then
        say "aiosmtpd venv present"
        return
    fi
    say "creating aiosmtpd venv"
    "$PYTHON" -m venv "$venv"
    # The pin lives in bench/requirements.txt.
    "$venv/bin/pip" install -q -r "$HERE/requirements.txt" >"$WORK/pip-aiosmtpd.log" 2>&1
}

install_haraka() {
    local dir="$WORK/haraka-node"
    if [ -f "$dir/node_modules/Haraka/haraka.js" ]; then
        say "Haraka present"
        return
    fi
    if ! command -v npm >/dev/null 2>&1; then
        need_root nodejs
        say "installing nodejs and npm"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >"$WORK/apt-node.log" 2>&1
    fi
    say "installing Haraka $HARAKA_VERSION from npm"
    mkdir -p "$dir"
    [ -f "$dir/package.json" ] || echo '{"name":"bench-haraka","private":true}' > "$dir/package.json"
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error "Haraka@$HARAKA_VERSION" \
        >"$WORK/npm-haraka.log" 2>&1)
}

case "${1:-all}" in
    all) install_postfix; install_aiosmtpd; install_haraka ;;
    postfix) install_postfix ;;
    aiosmtpd) install_aiosmtpd ;;
    haraka) install_haraka ;;
    *) echo "usage: $0 [all|postfix|aiosmtpd|haraka]" >&2; exit 2 ;;
esac
say "done"
