"""The ``tsmtp`` command as an administrator meets it: ``--listen`` never lowers a listener's
security, every bad input is one line naming the flag or file (exit 2, no traceback), the log
names each listener's settings, and SIGHUP reloads a single-process server while its open
connections finish on the configuration they began with.
"""

from __future__ import annotations

import shutil
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import trio

from tests.test_nodes import Master
from tsmtp import ConfigError, Listener, Server, cli
from tsmtp.config import parse_host_port
from tsmtp.log import Level
from tsmtp.testing import SMTPClient

REPO = Path(__file__).resolve().parent.parent
SUBMISSION = REPO / "examples" / "submission"


def run_tsmtp(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tsmtp", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def one_line_error(code: int, stderr: str) -> str:
    """The error of a refused command line: exit 2 and exactly one line on stderr."""
    assert code == 2, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("tsmtp: "), stderr
    return lines[0]


# --- the three inputs, through a real process -------------------------------------------


def test_a_header_in_the_hostname_is_refused_at_load(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "smtp.toml").write_text('hostname = "evil\\r\\nX-Injected: 1"\n')
    for command in ("check", "run"):
        done = run_tsmtp(command, "--config", str(config), cwd=tmp_path)
        line = one_line_error(done.returncode, done.stderr)
        assert line.startswith(
            f"tsmtp: {config / 'smtp.toml'}: hostname: 'evil\\r\\nX-Injected: 1'"
        )


def test_listen_bogus_is_one_line(tmp_path: Path) -> None:
    done = run_tsmtp("run", "--config", str(REPO / "config"), "--listen", "bogus", cwd=tmp_path)
    line = one_line_error(done.returncode, done.stderr)
    assert line.startswith("tsmtp: --listen: expected HOST:PORT[,SETTING...]")
    assert line.endswith("got 'bogus'")


def test_log_level_loud_is_one_line(tmp_path: Path) -> None:
    done = run_tsmtp("run", "--config", str(REPO / "config"), "--log-level", "LOUD", cwd=tmp_path)
    line = one_line_error(done.returncode, done.stderr)
    assert line.startswith("tsmtp: --log-level: 'LOUD' is not a log level; use one of PROTOCOL,")


def test_listen_on_the_submission_example_says_which_settings_differ(tmp_path: Path) -> None:
    done = run_tsmtp("run", "--config", str(SUBMISSION), "--listen", "127.0.0.1:2587", cwd=tmp_path)
    line = one_line_error(done.returncode, done.stderr)
    assert line == (
        f"tsmtp: --listen: '127.0.0.1:2587': the 3 listeners of {SUBMISSION / 'smtp.toml'} "
        "differ in tls (required, implicit, offered) and require_auth (yes, no), so which this "
        "address takes is unclear; add them, such as 127.0.0.1:2587,tls=required,require_auth=yes"
    )


# --- every other refusal, through cli.main ----------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "error"),
    [
        ("", "expected HOST:PORT"),
        ("127.0.0.1", "expected HOST:PORT"),
        ("127.0.0.1:99999", "expected HOST:PORT"),
        ("127.0.0.1:25,tsl=required", "unknown setting 'tsl'; the settings are tls=none|offered"),
        ("127.0.0.1:25,tls=maybe", "tls must be tls=none|offered|required|implicit, got 'maybe'"),
        ("127.0.0.1:25,tls", "': tls must be tls=none|offered|required|implicit"),
        ("127.0.0.1:25,auth=sometimes", "auth must be auth=never|tls|always, got 'sometimes'"),
        ("127.0.0.1:25,require_auth=perhaps", "must be require_auth=yes|no, got 'perhaps'"),
        ("127.0.0.1:25,tls=none,tls=required", "tls is given twice"),
        ("127.0.0.1:25,,tls=none", "unknown setting ''"),
    ],
)
def test_bad_listen_values_are_one_line_naming_the_flag(
    listen: str, error: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["run", "--config", str(REPO / "config"), "--listen", listen])
    line = one_line_error(code, capsys.readouterr().err)
    assert line.startswith("tsmtp: --listen: ")
    assert error in line


def write_config(directory: Path, smtp_toml: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "smtp.toml").write_text(smtp_toml)
    return directory


@pytest.mark.parametrize(
    ("smtp_toml", "error"),
    [
        ('hostname = "mx example.com"', "hostname: 'mx example.com' is not a domain name"),
        ('hostname = ""', "hostname: '' is not a domain name"),
        ('hostname = "-mx.example.com"', "is not a domain name"),
        ('hostname = "mx..example.com"', "is not a domain name"),
        ('hostname = "mx.example.com."', "is not a domain name"),
        (f'hostname = "{"a" * 64}.example"', "is not a domain name"),
        ('hostname = "mx\\u0000.example"', "is not a domain name"),
        ('hostname = "bücher.example"', "write an internationalized name in its xn-- (A-label)"),
        ('hostname = "[192.0.2.300]"', "is not an address literal"),
        ('hostname = "[IPv6:zz::1]"', "is not an address literal"),
        ('greeting = "ready\\r\\n250 fake"', "greeting: 'ready\\r\\n250 fake' may hold only"),
        ('greeting = "ready\\u0007"', "greeting: 'ready\\x07' may hold only printable ASCII"),
        ('greeting = "prêt"', "greeting: 'prêt' may hold only printable ASCII"),
        ('[dns]\nnameservers = ["dns.example"]', "dns: nameservers: 'dns.example' is not an IP"),
        (
            '[tls]\ncert = "c"\nkey = "k"\n[[tls.sni]]\nnames = ["a b"]\ncert = "c"\nkey = "k"',
            "tls.sni[0]: names: 'a b' is not a domain name",
        ),
    ],
)
def test_bad_settings_are_one_line_naming_the_file_and_key(
    smtp_toml: str, error: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "config", smtp_toml + "\n")
    code = cli.main(["check", "--config", str(config)])
    line = one_line_error(code, capsys.readouterr().err)
    assert line.startswith(f"tsmtp: {config / 'smtp.toml'}: ")
    assert error in line


@pytest.mark.parametrize(
    "hostname",
    [
        "mx.example.com",
        "localhost",
        "MX-1.Example.COM",
        "xn--bcher-kva.example",
        "192.0.2.1",
        "[192.0.2.1]",
        "[IPv6:2001:db8::1]",
    ],
)
def test_good_hostnames_load(
    hostname: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "config", f'hostname = "{hostname}"\ngreeting = "ready\\t!"\n')
    assert cli.main(["check", "--config", str(config)]) == 0, capsys.readouterr().err


# --- --listen keeps the settings of smtp.toml -------------------------------------------------

STRICT = """
[[listen]]
address = "127.0.0.1:2587"
tls = "none"
auth = "always"
require_auth = true
"""


async def mail_from_reply(server: Server) -> int:
    """The reply code to MAIL FROM on the server's only listener, right after EHLO."""
    async with trio.open_nursery() as nursery:
        [(host, port)] = await nursery.start(server.serve)
        client = await SMTPClient.connect(host, port)
        assert (await client.command("EHLO client.example")).code == 250
        code = (await client.command("MAIL FROM:<a@example.org>")).code
        await client.aclose()
        nursery.cancel_scope.cancel()
    return code


async def test_listen_keeps_the_settings_of_the_only_listener(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config", STRICT)
    server = Server.from_config_dir(config, listen=["127.0.0.1:0"])
    assert server.config.listen == [
        Listener(address="127.0.0.1:0", tls="none", auth="always", require_auth=True)
    ]
    assert await mail_from_reply(server) == 530


async def test_listen_settings_given_override_those_of_smtp_toml(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config", STRICT)
    server = Server.from_config_dir(config, listen=["127.0.0.1:0,require_auth=no,auth=never"])
    assert server.config.listen == [Listener(address="127.0.0.1:0", tls="none", auth="never")]
    assert await mail_from_reply(server) == 250


def test_listen_takes_what_all_listeners_agree_on_and_asks_for_the_rest(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config",
        STRICT + STRICT.replace("2587", "2588") + STRICT.replace("2587", "2589"),
    )
    [one, two] = Server.from_config_dir(
        config, listen=["127.0.0.1:0", "[::1]:0,proxy_protocol"]
    ).config.listen
    assert one == Listener(address="127.0.0.1:0", tls="none", auth="always", require_auth=True)
    assert two == msgspec.structs.replace(one, address="[::1]:0", proxy_protocol=True)

    config = write_config(tmp_path / "config", STRICT + STRICT.replace('"none"', '"offered"'))
    with pytest.raises(ConfigError, match=r"differ in tls \(none, offered\), so which"):
        Server.from_config_dir(config, listen=["127.0.0.1:0,require_auth"])
    [given] = Server.from_config_dir(config, listen=["127.0.0.1:0,tls=offered"]).config.listen
    assert given == Listener(address="127.0.0.1:0", auth="always", require_auth=True)


async def test_each_listener_is_logged_with_its_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(Level.NOTICE, logger="tsmtp")
    config = write_config(
        tmp_path / "config",
        STRICT.replace("2587", "0")
        + '[[listen]]\naddress = "127.0.0.1:0"\n'
        + '[[listen]]\naddress = "127.0.0.1:0"\ntls = "none"\nauth = "never"\n'
        + "proxy_protocol = true\n",
    )
    server = Server.from_config_dir(config)
    async with trio.open_nursery() as nursery:
        [(_, strict), (_, plain), (_, proxied)] = await nursery.start(server.serve)
        nursery.cancel_scope.cancel()
    lines = [r.getMessage() for r in caplog.records if "listening on" in r.getMessage()]
    assert lines == [
        f"[-] [server] listening on 127.0.0.1:{strict} (tls=none, auth=always, "
        "require_auth=yes, proxy_protocol=no)",
        f"[-] [server] listening on 127.0.0.1:{plain} (tls=offered (no [tls] certificate: "
        "plain text only), auth=tls (so never: no TLS here), require_auth=no, proxy_protocol=no)",
        f"[-] [server] listening on 127.0.0.1:{proxied} (tls=none, auth=never, require_auth=no, "
        "proxy_protocol=yes)",
    ]
    assert {r.levelno for r in caplog.records if "listening on" in r.getMessage()} == {Level.NOTICE}


# --- SIGHUP with nodes = 1: a reload in place ----------------------------------------------

NO_BOB = """
from tsmtp import Address, Connection, MailParams, Outcome, Plugin, Verdict, override


class NoBob(Plugin):
    @override
    async def hook_mail(
        self, connection: Connection, sender: Address, params: MailParams
    ) -> Outcome:
        return Verdict.DENY("5.7.1 no mail from bob") if sender.local_part == "bob" else None
"""


def test_sighup_with_one_node_reloads_and_keeps_the_open_transaction(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    smtp_toml = config / "smtp.toml"
    assert "\nnodes = 1 " in smtp_toml.read_text()
    master = Master(tmp_path, config)
    try:
        port = int(master.wait_for(r"listening on 127\.0\.0\.1:(\d+)")[1])
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as old:
            old.ehlo()
            assert old.mail("s@example.org")[0] == 250
            assert old.rcpt("r@example.com")[0] == 250
            # The new configuration: another greeting and one more plugin.
            (config / "site").mkdir()
            (config / "site" / "no_bob.py").write_text(NO_BOB)
            text = smtp_toml.read_text().replace("search_path = []", 'search_path = ["site"]')
            smtp_toml.write_text('greeting = "reloaded and ready"\n' + text)
            (config / "plugins").write_text("no_bob\n" + (config / "plugins").read_text())
            master.proc.send_signal(signal.SIGHUP)
            master.wait_for(
                r"\[NOTICE\] .*reloaded: plugins no_bob, relay_acl, rcpt_to\.in_host_list, "
                r"queue\.maildir; 1 open connections finish with the previous configuration"
            )
            assert old.data(b"Subject: across SIGHUP\r\n\r\nbody\r\n")[0] == 250
            # The open connection goes on with the configuration it started with.
            assert old.mail("bob@example.org")[0] == 250
            assert old.rcpt("r@example.com")[0] == 250
            assert old.data(b"Subject: bob, before\r\n\r\nbody\r\n")[0] == 250
            # A new connection gets the new one.
            with smtplib.SMTP(timeout=10) as new:
                assert new.connect("127.0.0.1", port) == (220, b"localhost reloaded and ready")
                new.ehlo()
                assert new.mail("bob@example.org") == (550, b"5.7.1 no mail from bob")
                assert new.mail("s@example.org")[0] == 250
            assert old.noop()[0] == 250
        master.proc.send_signal(signal.SIGTERM)
        assert master.proc.wait(timeout=30) == 0
    finally:
        master.close()
    subjects = sorted(
        p.read_bytes().split(b"Subject: ")[1].split(b"\r\n")[0]
        for p in (tmp_path / "var" / "mail" / "new").iterdir()
    )
    assert subjects == [b"across SIGHUP", b"bob, before"]


def test_listen_ports_take_ascii_digits_only() -> None:
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_host_port("127.0.0.1:\u0662\u0665")
