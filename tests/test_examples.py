"""The bundled submission example works as the README says: swaks over STARTTLS + AUTH and
over implicit TLS, with a certificate and a user made the documented way."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest
import trio
import trustme

from tsmtp import Server, ServerContext
from tsmtp.config import load_server_config
from tsmtp.passwords import set_password
from tsmtp.plugins import load_plugins

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "submission"

needs_swaks = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")


@needs_swaks
async def test_submission_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir = tmp_path / "submission"
    shutil.copytree(EXAMPLE, config_dir)
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert.cert_chain_pems[0].write_to_path(str(config_dir / "tls" / "cert.pem"))
    cert.private_key_pem.write_to_path(str(config_dir / "tls" / "key.pem"))
    set_password(config_dir / "auth_users", "alice", "s3cret")
    monkeypatch.chdir(tmp_path)

    config = load_server_config(config_dir)
    # Same listeners, free ports.
    listen = [msgspec.structs.replace(lst, address="127.0.0.1:0") for lst in config.listen]
    config = msgspec.structs.replace(config, listen=listen)
    context = ServerContext(config)
    server = Server(
        config, load_plugins(config_dir, context), context=context, config_dir=config_dir
    )

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
