"""One SMTP conversation on a Trio stream: the command state machine, limits and timeouts.

The protocol core parses; this package decides what each command means here, asks the plugins
through the hook runner and writes the replies. Replies to pipelined commands are collected and
sent in one write when the session would otherwise wait for the client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

import trio

from .. import hooks as H
from .. import replies as R
from ..connection import Hello
from ..protocol import (
    LINE_TOO_LONG,
    RCPT_PARAMETERS,
    ProtocolError,
    Reply,
    parse_hello,
    sequencing,
    split_command,
)
from ..runner import Decision
from ..stream import SocketStream
from ..verdict import Verdict
from .base import ClientGone, CloseSession, Runtime
from .chunking import Chunking
from .connect import ConnectPhase
from .envelope import Envelope
from .tls_auth import TLSAndAuth

__all__ = ["Runtime", "Session"]

#: Which EHLO keyword enables which MAIL and RCPT parameters.
_MAIL_PARAMS_BY_KEYWORD = {
    "SIZE": "SIZE",
    "8BITMIME": "BODY",
    "SMTPUTF8": "SMTPUTF8",
    "AUTH": "AUTH",
}
_DSN_MAIL_PARAMS = frozenset({"RET", "ENVID"})
_NOT_IMPLEMENTED = frozenset({"EXPN", "TURN", "ETRN", "SEND", "SOML", "SAML"})


class Session(ConnectPhase, Envelope, TLSAndAuth, Chunking):
    """The conversation with one client. Create it, then ``await session.run()``."""

    __slots__ = ()

    # --- the conversation ---------------------------------------------------------------------

    async def run(self) -> None:
        conn = self.conn
        if self._info:
            conn.loginfo(f"connect from {conn.remote} to {conn.local}")
        try:
            with self.cancel_scope:
                try:
                    with self._io_scope:
                        if await self._start():
                            await self._converse()
                    if self._io_scope.cancelled_caught:
                        self._wait_ended()
                except CloseSession:
                    pass
                except ClientGone:
                    raise
                except Exception as exc:
                    conn.logcrit(f"session error: {exc!r}")
                    self.reply(R.INTERNAL_ERROR)
                await self._last_flush()
        except ClientGone:
            conn.loginfo("client went away")
        finally:
            conn._closing = True
            self._idle_over()
            if self._admitted_as is not None:
                self.runtime.limiter.release(self._admitted_as)
            if conn.transaction is not None or (self._connected and self.runner.has(H.disconnect)):
                with trio.CancelScope(shield=True):
                    await self._end_transaction()
                    if self._connected:
                        await self.runner.run(H.disconnect, conn)
            if isinstance(self.stream, SocketStream):
                self.stream.close()
            else:
                await trio.aclose_forcefully(self.stream)
            if self._info:
                conn.loginfo(
                    f"disconnect from {conn.remote} ({conn.transaction_count} transactions)"
                )

    async def _converse(self) -> None:
        conn = self.conn
        self._connected = True
        await self.runner.run(H.connect_init, conn)
        refused = False
        if self.runner.has(H.lookup_rdns):
            decision = await self.runner.run(H.lookup_rdns, conn)
            if decision.verdict is Verdict.OK and isinstance(decision.result.value, str):
                conn._remote = dataclasses.replace(conn.remote, host=decision.result.value)
            else:
                refused = await self._refused_at_connect(
                    decision, H.lookup_rdns.deny, H.lookup_rdns.denysoft
                )
        if not refused:
            decision = await self.runner.run(H.connect, conn)
            if await self._talked_early():
                conn.lognotice(f"refused {conn.remote}: talked before the greeting")
                self.reply(R.EARLY_TALKER)
                raise CloseSession
            refused = await self._refused_at_connect(decision, H.connect.deny, H.connect.denysoft)
        if not refused:
            greeting = self.config.greeting or "ESMTP tsmtp ready"
            self.reply(Reply.of(220, f"{self.config.hostname} {greeting}"))
        await self._command_loop()

    async def _refused_at_connect(self, decision: Decision, hard: Reply, soft: Reply) -> bool:
        """Answer a refusal at connect time; True if the greeting was replaced.

        A 554 greeting keeps the connection open and answers 503 until QUIT (RFC 5321 3.1);
        a temporary refusal is a 421, which closes.
        """
        verdict = decision.verdict
        if not verdict.is_denial and verdict is not Verdict.DISCONNECT:
            return False
        if verdict is Verdict.DISCONNECT:
            raise CloseSession
        refusal = self._refusal(decision, hard, soft)
        if verdict.is_temporary or verdict.disconnects:
            self.reply(
                Reply(
                    421 if verdict.is_temporary else refusal.code, refusal.lines, refusal.enhanced
                )
            )
            raise CloseSession
        self.reply(refusal)
        self._greeting_refused = True
        return True

    async def _command_loop(self) -> None:
        limits = self.config.limits
        occupancy = self.runtime.occupancy
        lines = self.lines
        conn = self.conn
        started = trio.current_time()
        deadline = started + limits.command_timeout
        while True:
            self._check_error_limits()
            line = lines.next_line()
            if line is None:
                if occupancy.stressed:
                    deadline = min(deadline, started + limits.stress_command_timeout)
                if conn.transaction is None:
                    self._idle_from_now()
                # The whole line must arrive in time, however slowly it trickles in.
                data = await self.receive(max(deadline - trio.current_time(), 0))
                if not data:
                    return
                lines.feed(data)
                continue
            self._idle_over()
            started = trio.current_time()
            deadline = started + limits.command_timeout
            if line is LINE_TOO_LONG:
                self.error(R.LINE_TOO_LONG)
                continue
            assert isinstance(line, bytes)
            try:
                command = split_command(line)
            except ProtocolError as exc:
                self.error(Reply.of(exc.code, exc.text, exc.enhanced))
                continue
            if self._trace:
                self.conn.logprotocol(f"C: {command.verb} {command.argument}".rstrip())
            refused = sequencing.refusal(command.verb, self)
            if refused is not None and command.verb != "BDAT":  # BDAT must still read its chunk
                self.error(refused)
                continue
            handler = _COMMANDS.get(command.verb)
            try:
                if handler is None:
                    await self._unrecognized(command.verb, command.argument)
                else:
                    await handler(self, command.argument)
            except ProtocolError as exc:
                self.error(Reply.of(exc.code, exc.text, exc.enhanced))

    # --- commands --------------------------------------------------------------------------------

    async def _helo(self, argument: str) -> None:
        await self._hello("HELO", argument)

    async def _ehlo(self, argument: str) -> None:
        await self._hello("EHLO", argument)

    async def _hello(self, verb: str, argument: str) -> None:
        conn = self.conn
        name = parse_hello(argument, verb)
        await self._reset(sequencing.RESETS[verb])
        decision = await self.runner.run(H.ehlo if verb == "EHLO" else H.helo, conn, name)
        if self._refuses(decision):
            conn._hello = None
            self._refuse(decision, H.helo.deny, H.helo.denysoft)
            return
        conn._hello = Hello("EHLO" if verb == "EHLO" else "HELO", name)
        remote = conn.remote
        greeting = f"{self.config.hostname} Hello {remote.host or remote.ip} [{remote.ip}]"
        if verb == "HELO":
            self._mail_params = self._rcpt_params = frozenset()
            self.reply(self._accept(decision, Reply.of(250, greeting)))
            return
        capabilities = [
            "PIPELINING",
            f"SIZE {self.config.limits.max_message_size}",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "CHUNKING",
        ]
        if self.config.dsn:
            capabilities.append("DSN")
        if self._starttls_available():
            capabilities.append("STARTTLS")
        if self._auth_available():
            capabilities.append("AUTH " + " ".join(self.config.auth.mechanisms))
        await self.runner.run(H.capabilities, conn, capabilities)
        keywords = {c.split(" ", 1)[0].upper() for c in capabilities}
        self._mail_params = frozenset(
            param for keyword, param in _MAIL_PARAMS_BY_KEYWORD.items() if keyword in keywords
        ) | (_DSN_MAIL_PARAMS if "DSN" in keywords else frozenset())
        self._rcpt_params = RCPT_PARAMETERS if "DSN" in keywords else frozenset()
        self.reply(Reply(250, (greeting, *capabilities)))

    async def _rset(self, argument: str) -> None:
        self._require_no_argument("RSET", argument)
        decision = await self.runner.run(H.rset, self.conn)
        await self._reset(sequencing.RESETS["RSET"])
        if decision.verdict.disconnects:
            self._refuse(decision, H.rset.deny, H.rset.denysoft)
        self.reply(R.OK)

    async def _noop(self, argument: str) -> None:
        decision = await self.runner.run(H.noop, self.conn)
        if self._refuses(decision):
            self._refuse(decision, H.noop.deny, H.noop.denysoft)
            return
        self.reply(self._accept(decision, R.OK))

    async def _quit(self, argument: str) -> None:
        await self.runner.run(H.quit, self.conn)
        self.reply(Reply.of(221, f"{self.config.hostname} closing connection", "2.0.0"))
        raise CloseSession

    async def _vrfy(self, argument: str) -> None:
        if not argument:
            raise ProtocolError(501, "5.5.4", "Syntax: VRFY address")
        decision = await self.runner.run(H.vrfy, self.conn, argument)
        if self._refuses(decision):
            self._refuse(decision, H.vrfy.deny, H.vrfy.denysoft)
        elif decision.verdict is Verdict.OK:
            self.reply(self._accept(decision, Reply.of(250, "User OK", "2.1.5")))
        else:
            self.reply(R.VRFY_DEFAULT)

    async def _help(self, argument: str) -> None:
        self.reply(R.HELP)

    async def _unrecognized(self, verb: str, argument: str) -> None:
        conn = self.conn
        decision = await self.runner.run(H.unrecognized_command, conn, verb, argument)
        if decision.verdict is Verdict.HOOK:
            name = decision.result.value
            if not isinstance(name, str) or name == "unrecognized_command":
                conn.logerror(
                    f"{decision.plugin}: HOOK needs the name of another hook, got {name!r}"
                )
                self.reply(H.unrecognized_command.denysoft)
                return
            decision = await self.runner.run_custom(name, conn, verb, argument)
        if decision.verdict is Verdict.OK:
            self.reply(self._accept(decision, R.OK))
            return
        if self._refuses(decision):
            hard = Reply(
                521 if decision.verdict is Verdict.DENYDISCONNECT else 500,
                H.unrecognized_command.deny.lines,
                "5.5.1",
            )
            self._refuse(decision, hard, H.unrecognized_command.denysoft)
            return
        conn.logdebug(f"unrecognized command {verb!r}")
        self.error(R.NOT_IMPLEMENTED if verb in _NOT_IMPLEMENTED else H.unrecognized_command.deny)


_COMMANDS: dict[str, Callable[[Session, str], Awaitable[None]]] = {
    "HELO": Session._helo,
    "EHLO": Session._ehlo,
    "MAIL": Session._mail,
    "RCPT": Session._rcpt,
    "DATA": Session._data,
    "RSET": Session._rset,
    "NOOP": Session._noop,
    "QUIT": Session._quit,
    "VRFY": Session._vrfy,
    "HELP": Session._help,
    "STARTTLS": Session._starttls,
    "AUTH": Session._auth,
    "BDAT": Session._bdat,
}
