"""The message API through a real server: header edits and banners reach the stored message,
what no plugin changed is stored octet for octet, and big messages are checked by walking them."""

from __future__ import annotations

import email.policy
import smtplib
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsmtp import Connection, MessageTooLarge, Outcome, Plugin, Transaction, Verdict, override
from tsmtp.bundled.queue.maildir import Maildir, MaildirConfig
from tsmtp.config import DataSettings
from tsmtp.testing import (
    AcceptAll,
    CaptureQueue,
    RunningServer,
    make_plugin,
    running_server,
    test_config,
)


def body_after_received(message: bytes) -> bytes:
    """The message without the Received field the server put on top (its date line ends it;
    a message may itself start with a line that looks like a continuation)."""
    assert message.startswith(b"Received: ")
    date = message.index(b";\r\n\t") + 4
    return message[message.index(b"\r\n", date) + 2 :]


class Rewrite(Plugin):
    """Tags the subject's language, drops an internal header and adds a banner."""

    @override
    async def hook_data_post(self, connection: Connection, transaction: Transaction) -> Outcome:
        txn = connection.transaction
        assert txn is not None
        subject = txn.headers.get("Subject") or ""
        txn.headers.add("X-Subject-Seen", subject.upper())
        txn.results.add(self, removed=txn.headers.remove("X-Internal"))
        txn.results.add(self, banners=txn.add_banner("-- \nChecked by tsmtp"))
        return None


def maildir(path: Path) -> Maildir:
    return make_plugin(Maildir, name="queue.maildir", config=MaildirConfig(path=str(path)))


async def test_a_header_removal_and_a_banner_show_in_the_maildir(tmp_path: Path) -> None:
    message = EmailMessage()
    message["From"] = "sender@example.org"
    message["To"] = "rcpt@example.com"
    message["Subject"] = "Grüße aus Köln"
    message["X-Internal"] = "secret routing note"
    message.set_content("line one\n.leading dot\n\nlast line\n")
    message.add_attachment(b"\x00" * 3000, "application", "octet-stream", filename="z.bin")

    sent = message.as_bytes(policy=email.policy.SMTP)
    async with running_server([AcceptAll, Rewrite, maildir(tmp_path / "md")]) as srv:

        def send() -> dict[str, tuple[int, bytes]]:
            with smtplib.SMTP(srv.host, srv.port, timeout=10) as client:
                return client.sendmail("sender@example.org", ["rcpt@example.com"], sent)

        assert await trio.to_thread.run_sync(send) == {}

    (path,) = (tmp_path / "md" / "new").iterdir()
    data = path.read_bytes()
    assert path.name.endswith(f",S={len(data)}"), "the size in the name is the stored size"
    assert data.startswith(b"Received: from ")
    stored = BytesParser(policy=email.policy.default).parsebytes(data)
    assert stored["X-Internal"] is None
    assert stored["X-Subject-Seen"] == "GRÜSSE AUS KÖLN"
    assert stored.keys()[-1] == "X-Subject-Seen", "added at the end"
    text, attachment = (p for p in stored.walk() if not p.is_multipart())
    assert (
        text.get_content() == "line one\r\n.leading dot\r\n\r\nlast line\r\n-- \r\nChecked by tsmtp"
    )
    assert attachment.get_content() == b"\x00" * 3000

    internal = b"X-Internal: secret routing note\r\n"
    added = b"X-Subject-Seen: =?utf-8?q?GR=C3=9CSSE_AUS_K=C3=96LN?=\r\n"
    banner = b"-- \r\nChecked by tsmtp\r\n"
    head, _, body = sent.partition(b"\r\n\r\n")
    text_end = body.index(b"\r\n--", body.index(b"last line"))
    expected = (
        head.replace(internal, b"")
        + b"\r\n"
        + added
        + b"\r\n"
        + body[:text_end]
        + banner[:-2]
        + body[text_end:]
    )
    assert body_after_received(data) == expected, "every other octet as sent"


async def send_bdat(srv: RunningServer, messages: list[bytes]) -> None:
    """Send each message in one BDAT LAST chunk, so any octets at all can be in it."""
    client = await srv.connect()
    assert (await client.command("EHLO client.test")).code == 250
    for message in messages:
        assert (await client.command("MAIL FROM:<a@client.test>")).code == 250
        assert (await client.command("RCPT TO:<r@example.org>")).code == 250
        await client.send(b"BDAT %d LAST\r\n" % len(message) + message)
        assert (await client.read_reply()).code == 250
    assert (await client.command("QUIT")).code == 221


ODD = [
    b"Subject: bare LF\n\nbody\nmore\n",
    b"Subject: bare CR\r\rbody\rmore",
    b"Subject: mixed\r\nX-A: 1\n\r\nbody\r\n\n\r.\r\n..\r\n",
    b"Subject: ends in the header",
    b"no header at all\r\nX-Not: a header\r\n",
    b"\r\nonly a body\r\n",
    b"",
    b"Subject: trailing spaces   \r\n folded\t \r\n\r\n  \r\n",
    b"From envelope line\r\nSubject: x\r\n\r\nbody",
    b"Subject: \xff\xfe not utf-8\r\n\r\n\x00\x01\x80 binary \r\n",
]


async def test_unchanged_messages_are_stored_octet_for_octet() -> None:
    async with running_server([AcceptAll, CaptureQueue]) as srv:
        await send_bdat(srv, ODD)
        captured = srv.plugin(CaptureQueue).messages
    assert [body_after_received(m.data) for m in captured] == ODD


async def test_unchanged_messages_through_data_are_stored_octet_for_octet() -> None:
    messages = [b"Subject: dots\r\n\r\n.\r\n..\r\n.x\r\n", b"no header\r\n", b"\r\n\r\n"]
    async with running_server([AcceptAll, CaptureQueue]) as srv:
        client = await srv.connect()
        assert (await client.command("EHLO client.test")).code == 250
        for message in messages:
            reply = await client.send_message("a@client.test", ["r@example.org"], message)
            assert reply.code == 250
        captured = srv.plugin(CaptureQueue).messages
    assert [body_after_received(m.data) for m in captured] == messages


_LINE = st.tuples(
    st.sampled_from([b"Subject: s", b"X-A: 1", b" folded", b"", b".", b"body", b"--b", b"From x"])
    | st.binary(max_size=12),
    st.sampled_from([b"\r\n", b"\n", b"\r", b""]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.lists(_LINE, max_size=8).map(lambda ls: b"".join(a + b for a, b in ls)),
        min_size=1,
        max_size=4,
    )
)
def test_any_unchanged_message_is_stored_octet_for_octet(messages: list[bytes]) -> None:
    async def main() -> list[bytes]:
        async with running_server([AcceptAll, CaptureQueue]) as srv:
            await send_bdat(srv, messages)
            return [m.data for m in srv.plugin(CaptureQueue).messages]

    assert [body_after_received(data) for data in trio.run(main)] == messages


class NoExecutables(Plugin):
    """Refuses messages with a .exe attachment, whatever their size."""

    @override
    async def hook_data_post(self, connection: Connection, transaction: Transaction) -> Outcome:
        txn = connection.transaction
        assert txn is not None
        try:
            txn.message()
        except MessageTooLarge as too_large:
            txn.results.add(self, skip="whole parse", size=too_large.size)
        parts = await trio.to_thread.run_sync(txn.parts)
        names = [part.filename for part in parts if part.filename]
        txn.results.add(self, msg=names)
        if any(name.lower().endswith(".exe") for name in names):
            return Verdict.DENY("5.7.1 executables are not accepted")
        return None


async def test_big_messages_are_walked_not_parsed() -> None:
    config = test_config(data=DataSettings(max_parse_size=1 << 20, spool_threshold=1 << 16))
    messages = []
    for name in ("report.pdf", "setup.EXE"):
        message = EmailMessage()
        message["Subject"] = name
        message.set_content("see attached\n")
        message.add_attachment(bytes(3 << 20), "application", "octet-stream", filename=name)
        messages.append(message.as_bytes(policy=email.policy.SMTP))
    async with running_server([AcceptAll, NoExecutables, CaptureQueue], config=config) as srv:
        client = await srv.connect()
        assert (await client.command("EHLO client.test")).code == 250
        replies = [
            await client.send_message("a@client.test", ["r@example.org"], message)
            for message in messages
        ]
        captured = srv.plugin(CaptureQueue).messages
    assert [r.code for r in replies] == [250, 550]
    assert replies[1].lines == ["5.7.1 executables are not accepted"]
    (accepted,) = captured
    found = accepted.results.get("noexecutables")
    assert found is not None
    assert found.msg == ["report.pdf"]
    assert found.skip == ["whole parse"]
    assert found.field("size", int) == len(accepted.data)
