"""The bundled submission example works as the README says: swaks over STARTTLS + AUTH and
over implicit TLS, with a certificate and a user made the documented way; moved to other ports
with ``--listen``, its listeners keep what they require."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import pytest
import trio
import trustme

from tsmtp import Server
from tsmtp.passwords import set_password
from tsmtp.testing import SMTPClient

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "submission"

needs_swaks = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")

#: The example's three listeners on free ports, as ``tsmtp run --listen`` would give them.
LISTEN = [
    "127.0.0.1:0,tls=required,require_auth",
    "127.0.0.1:0,tls=implicit,require_auth",
    "127.0.0.1:0,tls=offered,require_auth=no",
]


def example_site(tmp_path: Path, ca: trustme.CA) -> Path:
    """The example copied under ``tmp_path``, with a certificate and the user alice."""
    config_dir = tmp_path / "submission"
    shutil.copytree(EXAMPLE, config_dir)
    cert = ca.issue_cert("localhost")
    cert.cert_chain_pems[0].write_to_path(str(config_dir / "tls" / "cert.pem"))
    cert.private_key_pem.write_to_path(str(config_dir / "tls" / "key.pem"))
    set_password(config_dir / "auth_users", "alice", "s3cret")
    return config_dir


async def test_a_moved_submission_port_still_requires_tls_and_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    config_dir = example_site(tmp_path, ca)
    monkeypatch.chdir(tmp_path)
    server = Server.from_config_dir(config_dir, listen=[LISTEN[0]])
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    async with trio.open_nursery() as nursery:
        [(host, port)] = await nursery.start(server.serve)
        client = await SMTPClient.connect(host, port)
        assert (await client.command("EHLO client.example")).code == 250
        plain = await client.command("MAIL FROM:<alice@example.org>")
        assert (plain.code, plain.lines[0][:5]) == (530, "5.7.0")
        assert (await client.starttls(client_tls, "localhost")).code == 220
        assert (await client.command("EHLO client.example")).code == 250
        unauthenticated = await client.command("MAIL FROM:<alice@example.org>")
        assert unauthenticated.code == 530 and "Authentication required" in unauthenticated.text
        await client.aclose()
        nursery.cancel_scope.cancel()


@needs_swaks
async def test_submission_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir = example_site(tmp_path, trustme.CA())
    monkeypatch.chdir(tmp_path)
    server = Server.from_config_dir(config_dir, listen=LISTEN)

    async with trio.open_nursery() as nursery:
        (_, submission), (_, smtps), (_, mx) = await nursery.start(server.serve)
        base = ["swaks", "--server", "127.0.0.1", "--to", "a@example.com", "--from", "alice@x.y"]
        auth = ["--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "s3cret"]
        runs = [
            [*base, "--port", str(submission), "--tls", *auth],
            [*base, "--port", str(smtps), "--tlsc", *auth],
            [*base, "--port", str(mx)],
        ]
        for args in runs:
            done = await trio.run_process(args, capture_stdout=True, check=False)
            assert done.returncode == 0, done.stdout.decode()
        refused = await trio.run_process(
            [*base, "--port", str(submission), "--tls"], capture_stdout=True, check=False
        )
        assert b"530 5.7.0 Authentication required" in refused.stdout
        wrong = await trio.run_process(
            [*base, "--port", str(smtps), "--tlsc", *auth[:-1], "nope"],
            capture_stdout=True,
            check=False,
        )
        assert b"535 5.7.8" in wrong.stdout
        nursery.cancel_scope.cancel()
    stored = list((tmp_path / "var" / "mail" / "new").iterdir())
    assert len(stored) == 3
    received = sorted(p.read_bytes().split(b" id ")[0] for p in stored)
    assert any(b"with ESMTPSA" in r for r in received)
