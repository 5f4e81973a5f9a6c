"""Per-connection error limits, refused recipients, per-address limits and their exemptions,
and the bare <Postmaster> recipient, over real sockets."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from tsmtp import Address, Connection, Outcome, Plugin, RcptParams, Verdict, override
from tsmtp.config import ConfigError, Limits, Listener, load_server_config
from tsmtp.connection import Peer
from tsmtp.limits import ConnectionLimiter
from tsmtp.log import Level
from tsmtp.testing import SMTPClient, running_server, test_config

from .helpers import MemoryQueue, wait_for


async def test_refused_recipients_count_toward_max_errors() -> None:
    config = test_config(limits=Limits(max_errors=3, max_refused_recipients=100))
    async with running_server([MemoryQueue], config=config) as srv:
        c = await srv.connect()
        await c.command("EHLO client.test")
        assert (await c.command("MAIL FROM:<a@client.test>")).code == 250
        assert (await c.command("RCPT TO:<x1@elsewhere.test>")).code == 550
        assert (await c.command("RCPT TO:<x2@elsewhere.test>")).code == 550
        assert (await c.command("RCPT TO:<x3@elsewhere.test>")).code == 550
        closing = await c.read_reply()
        assert closing.code == 421 and "Too many errors" in closing.text
        assert await c.at_eof()


async def test_a_connection_may_not_probe_more_than_max_refused_recipients() -> None:
    config = test_config(limits=Limits(max_errors=1000, max_refused_recipients=4))
    async with running_server([MemoryQueue], config=config) as srv:
        c = await srv.connect()
        await c.command("EHLO client.test")
        await c.command("MAIL FROM:<a@client.test>")
        # Pipelined, as a prober would: the connection ends after the fourth refusal.
        await c.send("".join(f"RCPT TO:<u{i}@elsewhere.test>\r\n" for i in range(50)))
        codes = [(await c.read_reply()).code for _ in range(4)]
        assert codes == [550] * 4
        closing = await c.read_reply()
        assert closing.code == 421 and "refused recipients" in closing.text
        assert await c.at_eof()


class DenyAll(Plugin):
    @override
    async def hook_rcpt(
        self, connection: Connection, recipient: Address, params: RcptParams
    ) -> Outcome:
        return Verdict.DENY("5.1.1 no such user")


async def test_refusals_are_logged_once_each_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(Level.PROTOCOL, logger="tsmtp")
    async with running_server([MemoryQueue]) as srv:
        c = await srv.connect()
        await c.command("EHLO client.test")
        await c.command("MAIL FROM:<a@client.test>")
        for i in range(3):
            assert (await c.command(f"RCPT TO:<u{i}@elsewhere.test>")).code == 550
    refusals = [r for r in caplog.records if "refused recipient <" in r.getMessage()]
    assert len(refusals) == 3
    for i, record in enumerate(refusals):
        assert record.levelno == Level.INFO
        assert f"<u{i}@elsewhere.test>" in record.getMessage()
        assert "127.0.0.1:" in record.getMessage()
    assert max(r.levelno for r in caplog.records) <= Level.NOTICE


async def test_a_plugin_refusal_of_a_recipient_is_logged_at_info_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(Level.PROTOCOL, logger="tsmtp")
    config = test_config(limits=Limits(max_refused_recipients=2))
    async with running_server([DenyAll], config=config) as srv:
        c = await srv.connect()
        await c.command("EHLO client.test")
        await c.command("MAIL FROM:<a@client.test>")
        first = await c.command("RCPT TO:<u@elsewhere.test>")
        assert (first.code, first.text) == (550, "5.1.1 no such user")
        assert (await c.command("RCPT TO:<v@elsewhere.test>")).code == 550
        assert (await c.read_reply()).code == 421
    refusals = [r for r in caplog.records if "refused recipient <" in r.getMessage()]
    assert [r.levelno for r in refusals] == [Level.INFO, Level.INFO]
    assert "by denyall" in refusals[0].getMessage()


# --- <Postmaster> (RFC 5321 4.5.1) ------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["Postmaster", "postmaster", "POSTMASTER"])
async def test_bare_postmaster_is_accepted_before_the_rcpt_hooks(spelling: str) -> None:
    config = test_config(postmaster="admin@mail.test")
    async with running_server([DenyAll, MemoryQueue], config=config) as srv:
        c = await srv.connect()
        await c.command("EHLO client.test")
        reply = await c.send_message("a@client.test", [spelling], "Subject: help\r\n\r\nhello")
        assert reply.code == 250
    [(sender, recipients, _message)] = MemoryQueue.stored
    assert (sender, recipients) == ("a@client.test", ["admin@mail.test"])


async def test_postmaster_defaults_to_the_first_host_list_domain(tmp_path: Path) -> None:
    (tmp_path / "host_list").write_text("# ours\nexample.org\nexample.net\n")
    assert load_server_config(tmp_path).postmaster == "postmaster@example.org"
    (tmp_path / "smtp.toml").write_text('postmaster = "root@example.net"\n')
    assert load_server_config(tmp_path).postmaster == "root@example.net"
    (tmp_path / "smtp.toml").write_text('hostname = "mx.example.com"\n')
    (tmp_path / "host_list").unlink()
    config = load_server_config(tmp_path)
    assert config.postmaster is None
    assert config.postmaster_address.address == "postmaster@mx.example.com"


def test_a_postmaster_that_is_not_a_mailbox_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "smtp.toml").write_text('postmaster = "root"\n')
    with pytest.raises(ConfigError, match=r"smtp.toml: .*postmaster.*'root'"):
        load_server_config(tmp_path)


# --- per-address limits ---------------------------------------------------------------------


def test_limiter_keys_group_ipv6_by_prefix_and_skip_exempt_networks() -> None:
    limiter = ConnectionLimiter(Limits(exempt_networks=["192.0.2.0/24"], ipv6_prefix=64))
    assert limiter.key_for("192.0.2.7") is None
    assert limiter.key_for("::ffff:192.0.2.7") is None
    assert limiter.key_for("198.51.100.1") == "198.51.100.1"
    assert limiter.key_for("::ffff:198.51.100.1") == "198.51.100.1"
    same = {limiter.key_for("2001:db8::1"), limiter.key_for("2001:db8::ffff:1234")}
    assert same == {"2001:db8::/64"}
    assert limiter.key_for("2001:db8:0:1::1") == "2001:db8:0:1::/64"
    default = ConnectionLimiter(Limits())
    assert default.key_for("127.0.0.1") is None and default.key_for("::1") is None


def test_exempt_networks_must_be_networks(tmp_path: Path) -> None:
    (tmp_path / "smtp.toml").write_text('[limits]\nexempt_networks = ["localhost"]\n')
    with pytest.raises(ConfigError, match="exempt_networks: 'localhost' is not an IP network"):
        load_server_config(tmp_path)


async def test_loopback_is_exempt_from_the_per_address_limit_by_default() -> None:
    config = test_config(limits=Limits(max_connections_per_ip=2))
    async with running_server([], config=config) as srv:
        clients = [await srv.connect() for _ in range(20)]
        assert {c.greeting.code for c in clients} == {220}


async def _connect_from(source: str, port: int) -> SMTPClient:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", port))
    client = SMTPClient(trio.SocketStream(sock))
    client.greeting = await client.read_reply()
    return client


async def test_per_address_limit_counts_each_address_when_not_exempt() -> None:
    config = test_config(limits=Limits(max_connections_per_ip=2, exempt_networks=["127.0.0.2/32"]))
    async with running_server([], config=config) as srv:
        a = [await _connect_from("127.0.0.3", srv.port) for _ in range(3)]
        assert [c.greeting.code for c in a] == [220, 220, 421]
        exempt = [await _connect_from("127.0.0.2", srv.port) for _ in range(5)]
        assert {c.greeting.code for c in exempt} == {220}
        for c in a + exempt:
            await c.aclose()


class RewritesTheClientAddress(Plugin):
    """Rewrites the client address, as an XCLIENT-style plugin would."""

    @override
    async def hook_connect(self, connection: Connection) -> Outcome:
        connection.set_remote(Peer("203.0.113.9", 1))
        return None


async def test_a_plugin_rewriting_the_client_address_does_not_leak_the_limit() -> None:
    config = test_config(limits=Limits(max_connections_per_ip=1, exempt_networks=[]))
    async with running_server([RewritesTheClientAddress], config=config) as srv:
        limiter = srv.server.runtime.limiter
        for _ in range(3):
            c = await srv.connect()
            assert c.greeting.code == 220
            assert (await c.command("QUIT")).code == 221
            await c.aclose()
            await wait_for(lambda: srv.server.active_connections == 0)
        assert limiter.open_count("127.0.0.1") == 0
        assert limiter.open_count("203.0.113.9") == 0


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
async def test_ipv6_clients_share_the_limit_of_their_prefix() -> None:
    config = test_config(
        listen=[Listener(address="[::1]:0")],
        limits=Limits(max_connections_per_ip=2, exempt_networks=[], ipv6_prefix=64),
    )
    async with running_server([], config=config) as srv:
        clients = [await SMTPClient.connect("::1", srv.port) for _ in range(3)]
        assert [c.greeting.code for c in clients] == [220, 220, 421]
        assert srv.server.runtime.limiter.open_count("::/64") == 2
        for c in clients:
            await c.aclose()


@pytest.mark.parametrize("bad", [b"MAIL\x00FROM:<a@b.test>", b"X" * 600, b"\xff\xfe"])
async def test_lines_the_protocol_core_refuses_count_toward_max_errors(bad: bytes) -> None:
    config = test_config(limits=Limits(max_errors=3))
    async with running_server([], config=config) as srv:
        c = await srv.connect()
        await c.send(b"".join(bad + b"\r\n" for _ in range(10)))
        codes = [(await c.read_reply()).code for _ in range(3)]
        assert all(500 <= code < 600 for code in codes), codes
        closing = await c.read_reply()
        assert closing.code == 421 and "Too many errors" in closing.text
        assert await c.at_eof()
