"""STARTTLS, implicit TLS, SNI and AUTH with real handshakes and certificates made here."""

from __future__ import annotations

import base64
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import trio
import trustme

from tsmtp import (
    Address,
    Connection,
    Credentials,
    MailParams,
    Outcome,
    Plugin,
    Transaction,
    Verdict,
    override,
)
from tsmtp.config import AuthSettings, ConfigError, Limits, Listener, SNICertificate, TLSSettings
from tsmtp.server import Server
from tsmtp.testing import running_server, test_config

from .helpers import AcceptAll, MemoryQueue


class Users(Plugin):
    """Accepts alice/secret."""

    @override
    async def hook_auth(self, connection: Connection, credentials: Credentials) -> Outcome:
        if (credentials.username, credentials.password) == ("alice", "secret"):
            return Verdict.OK
        return Verdict.DENY


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def certs(ca: trustme.CA, tmp_path: Path) -> Iterator[TLSSettings]:
    main = ca.issue_cert("mx.test")
    other = ca.issue_cert("other.test", "*.other.test")
    main.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "main.pem"))
    other.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "other.pem"))
    yield TLSSettings(
        cert=str(tmp_path / "main.pem"),
        key=str(tmp_path / "main.pem"),
        sni=[
            SNICertificate(
                cert=str(tmp_path / "other.pem"),
                key=str(tmp_path / "other.pem"),
                names=["other.test", "*.other.test"],
            )
        ],
    )


@pytest.fixture
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


PLUGINS: list[type[Plugin]] = [Users, AcceptAll, MemoryQueue]


async def test_starttls_resets_the_session_and_is_offered_once(
    certs: TLSSettings, client_context: ssl.SSLContext
) -> None:
    config = test_config(tls=certs)
    async with running_server(PLUGINS, config=config) as srv:
        c = await srv.connect()
        ehlo = await c.command("EHLO x")
        assert "STARTTLS" in ehlo.lines
        assert not any(line.startswith("AUTH") for line in ehlo.lines)
        await c.command("MAIL FROM:<a@b.c>")
        assert (await c.starttls(client_context, "mx.test")).code == 220
        tls_stream = c.stream
        assert isinstance(tls_stream, trio.SSLStream)
        assert tls_stream.version() in ("TLSv1.2", "TLSv1.3")
        # The transaction and the EHLO were forgotten.
        assert (await c.command("MAIL FROM:<a@b.c>")).code == 503
        ehlo = await c.command("EHLO x")
        assert "STARTTLS" not in ehlo.lines
        assert "AUTH PLAIN LOGIN" in ehlo.lines
        assert (await c.command("STARTTLS")).code == 503
        assert (await c.send_message("a@b.c", ["r@d.e"], "over tls")).code == 250
    message = MemoryQueue.stored[0][2]
    assert b"with ESMTPS id" in message and b"(using TLSv1." in message


async def test_commands_pipelined_before_the_handshake_are_discarded(
    certs: TLSSettings, client_context: ssl.SSLContext
) -> None:
    async with running_server(PLUGINS, config=test_config(tls=certs)) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        # The injection: one write with STARTTLS and a command meant to run inside TLS.
        await c.send(b"STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n")
        assert (await c.read_reply()).code == 220
        await c.wrap_tls(client_context, "mx.test")
        reply = await c.command("NOOP")
        assert (reply.code, reply.lines) == (250, ["2.0.0 OK"])
        assert (await c.command("EHLO x")).code == 250
        assert (await c.command("MAIL FROM:<real@b.c>")).code == 250


async def test_tls_required_refuses_mail_before_starttls(
    certs: TLSSettings, client_context: ssl.SSLContext
) -> None:
    listener = Listener(address="127.0.0.1:0", tls="required")
    async with running_server(PLUGINS, config=test_config(tls=certs, listen=[listener])) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        reply = await c.command("MAIL FROM:<a@b.c>")
        assert reply.code == 530 and "5.7.0" in reply.text
        await c.starttls(client_context, "mx.test")
        await c.command("EHLO x")
        assert (await c.command("MAIL FROM:<a@b.c>")).code == 250


async def test_implicit_tls_listener_and_sni(
    certs: TLSSettings, client_context: ssl.SSLContext
) -> None:
    listeners = [
        Listener(address="127.0.0.1:0"),
        Listener(address="127.0.0.1:0", tls="implicit"),
    ]
    async with running_server(PLUGINS, config=test_config(tls=certs, listen=listeners)) as srv:
        implicit_port = srv.server.addresses[1][1]
        for name in ("mx.test", "other.test", "smtp.other.test"):
            c = await srv.connect(port=implicit_port, read_greeting=False)
            await c.wrap_tls(client_context, name)  # verification checks the chosen cert
            assert (await c.read_reply()).code == 220
            ehlo = await c.command("EHLO x")
            assert "STARTTLS" not in ehlo.lines and "AUTH PLAIN LOGIN" in ehlo.lines
            assert (await c.command("QUIT")).code == 221


def test_tls_config_errors(tmp_path: Path, ca: trustme.CA) -> None:
    missing = test_config(tls=TLSSettings(cert="nope.pem", key="nope.pem"))
    with pytest.raises(ConfigError, match=r"tls\.cert: no such file"):
        Server(missing, [], config_dir=tmp_path)
    one = ca.issue_cert("a.test")
    two = ca.issue_cert("b.test")
    one.cert_chain_pems[0].write_to_path(str(tmp_path / "a.crt"))
    two.private_key_pem.write_to_path(str(tmp_path / "b.key"))
    mismatched = test_config(tls=TLSSettings(cert="a.crt", key="b.key"))
    with pytest.raises(ConfigError, match=r"cannot use certificate a\.crt with key b\.key"):
        Server(mismatched, [], config_dir=tmp_path)
    no_cert = test_config(listen=[Listener(address="127.0.0.1:0", tls="implicit")])
    with pytest.raises(ConfigError, match=r"listen\[0\].*needs \[tls\] cert and key"):
        Server(no_cert, [], config_dir=tmp_path)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_auth_plain_and_login(certs: TLSSettings, client_context: ssl.SSLContext) -> None:
    async with running_server(PLUGINS, config=test_config(tls=certs)) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        reply = await c.command("AUTH PLAIN " + b64("\0alice\0secret"))
        assert reply.code == 538  # not over TLS
        await c.starttls(client_context, "mx.test")
        await c.command("EHLO x")
        assert (await c.command("AUTH PLAIN " + b64("\0alice\0wrong"))).code == 535
        assert (await c.command("AUTH PLAIN not*base64")).code == 501
        challenge = await c.command("AUTH PLAIN")
        assert challenge.code == 334
        assert (await c.command("*")).code == 501
        assert (await c.command("AUTH CRAM-MD5")).code == 504
        assert (await c.command("AUTH LOGIN")).lines == ["VXNlcm5hbWU6"]
        assert (await c.command(b64("alice"))).lines == ["UGFzc3dvcmQ6"]
        reply = await c.command(b64("secret"))
        assert (reply.code, reply.lines) == (235, ["2.7.0 Authentication successful"])
        assert (await c.command("AUTH PLAIN " + b64("\0alice\0secret"))).code == 503
        # Authenticated clients relay by default: any recipient is accepted.
        assert (await c.command("MAIL FROM:<alice@b.c> AUTH=<>")).code == 250


async def test_auth_failures_disconnect(certs: TLSSettings) -> None:
    config = test_config(
        tls=certs,
        limits=Limits(max_auth_failures=2),
        listen=[Listener(address="127.0.0.1:0", auth="always")],
    )
    async with running_server(PLUGINS, config=config) as srv:
        c = await srv.connect()
        ehlo = await c.command("EHLO x")
        assert "AUTH PLAIN LOGIN" in ehlo.lines
        assert (await c.command("AUTH PLAIN " + b64("\0bob\0x"))).code == 535
        await c.send("AUTH PLAIN " + b64("\0bob\0y") + "\r\n")
        assert (await c.read_reply()).code == 535
        assert (await c.read_reply()).code == 421
        assert await c.at_eof()


async def test_submission_requires_auth(certs: TLSSettings) -> None:
    listener = Listener(address="127.0.0.1:0", auth="always", require_auth=True)
    config = test_config(tls=certs, listen=[listener], auth=AuthSettings(mechanisms=["PLAIN"]))
    async with running_server([Users, MemoryQueue], config=config) as srv:
        c = await srv.connect()
        assert "AUTH PLAIN" in (await c.command("EHLO x")).lines
        assert (await c.command("MAIL FROM:<a@b.c>")).code == 530
        assert (await c.command("AUTH PLAIN " + b64("\0alice\0secret"))).code == 235
        await c.command("MAIL FROM:<a@b.c>")
        assert (await c.command("RCPT TO:<anyone@far.example>")).code == 250
        await c.command("DATA")
        # Relayed mail goes to queue_outbound, which nobody implements here: 451, not lost.
        assert (await c.command("hi\r\n.")).code == 451


needs_swaks = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")


@needs_swaks
async def test_swaks_starttls_auth_plain_and_implicit_tls(certs: TLSSettings) -> None:
    listeners = [
        Listener(address="127.0.0.1:0", tls="required", require_auth=True),
        Listener(address="127.0.0.1:0", tls="implicit", require_auth=True),
    ]

    class Outbound(Plugin):
        @override
        async def hook_queue_outbound(
            self, connection: Connection, transaction: Transaction
        ) -> Outcome:
            return Verdict.OK

    async with running_server(
        [Users, Outbound], config=test_config(tls=certs, listen=listeners)
    ) as srv:
        (_, submission), (_, smtps) = srv.server.addresses
        base = ["swaks", "--server", "127.0.0.1", "--to", "x@far.example", "--from", "alice@b.c"]
        auth = ["--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "secret"]
        for extra in (["--port", str(submission), "--tls"], ["--port", str(smtps), "--tlsc"]):
            done = await trio.run_process(
                [*base, *auth, *extra], capture_stdout=True, capture_stderr=True, check=False
            )
            out = done.stdout.decode()
            assert done.returncode == 0, out
            assert "235 2.7.0 Authentication successful" in out
            assert "250 2.0.0 Message queued as" in out


class RelayFromConnect(Plugin):
    """Lets clients relay from the connect hook, as relay_acl does for listed networks."""

    @override
    async def hook_connect(self, connection: Connection) -> Outcome:
        connection.relaying = True
        return None


class SeenIdentity(Plugin):
    """Records the AUTH identity each MAIL command sees."""

    seen: ClassVar[list[str | None]] = []

    @override
    async def hook_mail(
        self, connection: Connection, sender: Address, params: MailParams
    ) -> Outcome:
        self.seen.append(connection.authenticated_user)
        return None


async def _auth_then_starttls(
    plugins: list[type[Plugin]], certs: TLSSettings, client_context: ssl.SSLContext
) -> tuple[int, int, int]:
    """AUTH in plain text, STARTTLS, then MAIL and a remote RCPT: the three reply codes."""
    config = test_config(tls=certs, listen=[Listener(address="127.0.0.1:0", auth="always")])
    async with running_server(plugins, config=config) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        assert (await c.command("AUTH PLAIN " + b64("\0alice\0secret"))).code == 235
        assert (await c.starttls(client_context, "mx.test")).code == 220
        assert (await c.command("EHLO x")).code == 250
        mail = (await c.command("MAIL FROM:<a@b.c>")).code
        rcpt = (await c.command("RCPT TO:<someone@remote.test>")).code
        await c.command("RSET")
        again = (await c.command("AUTH PLAIN " + b64("\0alice\0secret"))).code
        return mail, rcpt, again


async def test_plain_text_auth_is_forgotten_after_starttls(
    certs: TLSSettings, client_context: ssl.SSLContext
) -> None:
    SeenIdentity.seen = []
    mail, rcpt, again = await _auth_then_starttls(
        [Users, SeenIdentity, MemoryQueue], certs, client_context
    )
    assert (mail, rcpt) == (250, 550)  # no identity, so no relaying
    assert SeenIdentity.seen == [None]
    assert again == 235  # authenticating again, now over TLS, works


async def test_relaying_granted_by_the_connection_survives_starttls(
    certs: TLSSettings, client_context: ssl.SSLContext
) -> None:
    SeenIdentity.seen = []
    mail, rcpt, _ = await _auth_then_starttls(
        [RelayFromConnect, Users, SeenIdentity, MemoryQueue], certs, client_context
    )
    assert (mail, rcpt) == (250, 250)
    assert SeenIdentity.seen == [None]


class Proxies(Plugin):
    """alice/secret; ``admin`` may act as anyone, and says so with the identity as the value."""

    @override
    async def hook_auth(self, connection: Connection, credentials: Credentials) -> Outcome:
        if (credentials.username, credentials.password) == ("alice", "secret"):
            return Verdict.OK
        if (credentials.username, credentials.password) == ("admin", "root"):
            return Verdict.OK(value=credentials.authzid or None)
        return Verdict.DENY


@pytest.mark.parametrize(
    ("response", "code", "identity"),
    [
        ("alice\0alice\0secret", 235, "alice"),
        ("bob\0alice\0secret", 535, None),  # the hook checked the password, not the authzid
        ("bob\0admin\0root", 235, "bob"),  # the hook allowed that identity explicitly
        ("\0admin\0root", 235, "admin"),
    ],
)
async def test_an_authzid_needs_the_auth_hooks_consent(
    response: str, code: int, identity: str | None
) -> None:
    SeenIdentity.seen = []
    config = test_config(listen=[Listener(address="127.0.0.1:0", auth="always")])
    async with running_server([Proxies, SeenIdentity], config=config) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        assert (await c.command("AUTH PLAIN " + b64(response))).code == code
        await c.command("MAIL FROM:<a@b.c>")
    assert SeenIdentity.seen == [identity]


@pytest.mark.parametrize(
    "command",
    [
        "AUTH PLAIN " + b64("\0ali\r\nce\0secret"),
        "AUTH PLAIN " + b64("bob\nX\0alice\0secret"),
        "AUTH LOGIN " + b64("ali\x85ce"),
    ],
)
async def test_user_names_with_control_characters_are_refused(command: str) -> None:
    config = test_config(listen=[Listener(address="127.0.0.1:0", auth="always")])
    async with running_server([Proxies], config=config) as srv:
        c = await srv.connect()
        await c.command("EHLO x")
        reply = await c.command(command)
        assert (reply.code, reply.text) == (
            501,
            "5.5.2 User names may not contain control characters",
        )
