"""MAIL, RCPT and DATA."""

from __future__ import annotations

import trio

from .. import hooks as H
from .. import replies as R
from ..protocol import (
    Address,
    DataReader,
    ProtocolError,
    Reply,
    parse_mail,
    parse_rcpt,
)
from ..runner import Decision
from ..transaction import Recipient, Transaction
from ..verdict import Verdict
from .base import ClientGone, SessionBase


class Envelope(SessionBase):
    """MAIL, RCPT and DATA."""

    __slots__ = ()

    async def _mail(self, argument: str) -> None:
        conn = self.conn
        mail = parse_mail(argument, self._mail_params)
        params = mail.params
        if params.extra:
            raise ProtocolError(555, "5.5.4", f"Unsupported parameter {next(iter(params.extra))}")
        if not mail.sender.is_ascii and not params.smtputf8:
            self.reply(R.NEEDS_SMTPUTF8)
            return
        if params.size is not None and params.size > self.config.limits.max_message_size:
            self.reply(H.max_data_exceeded.deny)
            return
        conn._transaction_count += 1
        data = self.config.data
        conn._transaction = Transaction(
            f"{conn.uuid}.{conn.transaction_count}",
            mail.sender,
            params,
            spool_threshold=data.spool_threshold,
            spool_dir=data.spool_dir,
            max_parse_size=data.max_parse_size,
        )
        decision = await self.runner.run(H.mail, conn, mail.sender, params)
        path = mail.sender.bracketed()
        if self._refuses(decision):
            await self._end_transaction()
            self._refuse(
                decision,
                Reply.of(550, f"sender {path} denied", "5.7.1"),
                Reply.of(450, R.MAIL_DENYSOFT_TEXT.format(path), "4.7.1"),
            )
            return
        self.reply(self._accept(decision, Reply.of(250, f"sender {path} OK", "2.1.0")))

    async def _rcpt(self, argument: str) -> None:
        conn = self.conn
        txn = conn.transaction
        assert txn is not None  # the sequencing table saw to it
        rcpt = parse_rcpt(argument, self._rcpt_params)
        if rcpt.params.extra:
            raise ProtocolError(
                555, "5.5.4", f"Unsupported parameter {next(iter(rcpt.params.extra))}"
            )
        recipient = rcpt.recipient
        if not recipient.is_ascii and not txn.mail_params.smtputf8:
            self.reply(R.NEEDS_SMTPUTF8)
            return
        if len(txn.recipients) >= self.config.limits.max_recipients:
            self.reply(R.TOO_MANY_RECIPIENTS)
            return
        path = recipient.bracketed()
        if not recipient.domain:
            # RFC 5321 4.5.1: <Postmaster> MUST be accepted, whatever the plugins would say.
            postmaster = self.config.postmaster_address
            conn.loginfo(f"recipient {path} accepted for {postmaster.bracketed()}")
            txn.recipients.append(Recipient(postmaster, rcpt.params))
            self.reply(Reply.of(250, f"recipient {path} OK", "2.1.5"))
            return
        decision = await self.runner.run(H.rcpt, conn, recipient, rcpt.params)
        if self._refuses(decision):
            self._refuse_recipient(path, decision)
            return
        if decision.verdict is not Verdict.OK and not conn.relaying:
            self._refused_recipients += 1
            refusal = Reply.of(550, f"{path}: I cannot deliver for that user", "5.7.1")
            self._log_refused_recipient(path, "no plugin accepted it, no relaying", refusal)
            self.reply(refusal)
            return
        addresses = self._rewritten(recipient, decision)
        if addresses is None:
            self.reply(_rcpt_refusals(path)[1])
            return
        known = {r.address for r in txn.recipients}
        addresses = [a for a in dict.fromkeys(addresses) if a not in known]
        if len(txn.recipients) + len(addresses) > self.config.limits.max_recipients:
            self.reply(R.TOO_MANY_RECIPIENTS)
            return
        for address in addresses:
            check = await self.runner.run(H.rcpt_ok, conn, address)
            if self._refuses(check):
                self._refuse_recipient(path, check)
                return
        original = None if addresses == [recipient] else recipient
        txn.recipients.extend(Recipient(a, rcpt.params, original) for a in addresses)
        if original is not None:
            conn.loginfo(
                f"recipient {path} rewritten by {decision.plugin} to "
                + (", ".join(a.bracketed() for a in addresses) or "nothing new")
            )
        self.reply(self._accept(decision, Reply.of(250, f"recipient {path} OK", "2.1.5")))

    def _rewritten(self, recipient: Address, decision: Decision) -> list[Address] | None:
        """The addresses a rcpt verdict puts in the recipient's place; None if it gave junk."""
        value = decision.result.value
        if value is None or decision.verdict is not Verdict.OK:
            return [recipient]
        addresses = [value] if isinstance(value, Address) else value
        if (
            isinstance(addresses, list)
            and addresses
            and all(isinstance(a, Address) and a.domain for a in addresses)
        ):
            return addresses
        self.conn.logerror(
            f"{decision.plugin}: rcpt OK needs an Address or a non-empty list of them, "
            f"got {value!r}"
        )
        return None

    def _refuse_recipient(self, path: str, decision: Decision) -> None:
        hard, soft = _rcpt_refusals(path)
        self._refused_recipients += 1
        if decision.verdict is not Verdict.DISCONNECT:
            self._log_refused_recipient(
                path, f"by {decision.plugin}", self._refusal(decision, hard, soft)
            )
        self._refuse(decision, hard, soft)

    def _log_refused_recipient(self, path: str, why: str, reply: Reply) -> None:
        if self._info:
            self.conn.loginfo(
                f"refused recipient {path} from {self.conn.remote} {why}: {reply.code} {reply.text}"
            )

    async def _data(self, argument: str) -> None:
        conn = self.conn
        self._require_no_argument("DATA", argument)
        txn = conn.transaction
        assert txn is not None  # the sequencing table saw to it
        decision = await self.runner.run(H.data, conn, txn)
        if self._refuses(decision):
            await self._end_transaction()
            self._refuse(decision, H.data.deny, H.data.denysoft)
            return
        self.reply(R.START_DATA)
        # On any exceptional exit the transaction is ended by run(), shielded from cancellation.
        reader = await self._receive_body(txn)
        self.reply(await self._finish_message(txn, reader))
        await self._end_transaction()

    async def _receive_body(self, txn: Transaction) -> DataReader:
        settings = self.config.data
        reader = DataReader(
            self.config.limits.max_message_size,
            max_line=settings.max_line_length,
            bare_endings=settings.bare_line_endings,
        )
        body = txn.body
        data = self.lines.take()
        limits = self.config.limits
        deadline = trio.current_time() + limits.data_total_timeout
        while True:
            if data:
                chunk = reader.feed(data)
                if chunk:
                    body.write(chunk)
                if reader.done:
                    break
            data = await self.receive(min(limits.data_timeout, deadline - trio.current_time()))
            if not data:
                self.conn.lognotice(
                    f"client closed the connection during DATA ({reader.size} octets)"
                )
                raise ClientGone
        self.lines.feed(reader.leftover)
        return reader

    async def _finish_message(self, txn: Transaction, reader: DataReader) -> Reply:
        conn = self.conn
        if reader.too_big:
            conn.lognotice(f"message too big: {reader.size} octets")
            decision = await self.runner.run(H.max_data_exceeded, conn, txn)
            if self._refuses(decision):
                return self._final_refusal(
                    decision, H.max_data_exceeded.deny, H.max_data_exceeded.denysoft
                )
            return H.max_data_exceeded.deny
        if reader.bare_endings and self.config.data.bare_line_endings == "reject":
            conn.lognotice("message refused: bare CR or LF in data")
            return R.BARE_ENDINGS
        if reader.long_line:
            conn.lognotice("message refused: line longer than the limit")
            return R.LONG_LINE
        return await self._queue_message(txn)


def _rcpt_refusals(path: str) -> tuple[Reply, Reply]:
    """A refused recipient's default replies, built only when one is refused."""
    return (
        Reply.of(550, f"recipient {path} denied", "5.7.1"),
        Reply.of(450, R.RCPT_DENYSOFT_TEXT.format(path), "4.7.1"),
    )
