"""One SMTP conversation on a Trio stream: the command state machine, limits and timeouts.

The protocol core parses; this module decides what each command means here, asks the plugins
through the hook runner and writes the replies. Replies to pipelined commands are collected and
sent in one write when the session would otherwise wait for the client.
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import math
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from . import replies as R
from .config import Listener, ServerConfig
from .connection import Connection, Hello, Peer, ServerContext, TLSInfo
from .hooks import Credentials
from .limits import ConnectionLimiter
from .log import Level, logger
from .plugins import Decision, HookRunner
from .protocol import (
    LINE_TOO_LONG,
    MAIL_PARAMETERS,
    RCPT_PARAMETERS,
    DataReader,
    LineBuffer,
    ProtocolError,
    ProxyHeaderReader,
    Reply,
    parse_hello,
    parse_mail,
    parse_rcpt,
    split_command,
)
from .protocol.sasl import decode_response, decode_text, parse_plain
from .stream import SocketStream
from .transaction import Recipient, Transaction
from .verdict import Verdict

RECEIVE_SIZE = 1 << 16

#: Which EHLO keyword enables which MAIL and RCPT parameters.
_MAIL_PARAMS_BY_KEYWORD = {
    "SIZE": "SIZE",
    "8BITMIME": "BODY",
    "SMTPUTF8": "SMTPUTF8",
    "AUTH": "AUTH",
}
_DSN_MAIL_PARAMS = frozenset({"RET", "ENVID"})
_NOT_IMPLEMENTED = frozenset({"EXPN", "TURN", "ETRN", "SEND", "SOML", "SAML"})


_date_cache: tuple[int, str] = (0, "")


def _now_rfc5322() -> str:
    """The current date for a Received header, formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, localtime=True))
    return _date_cache[1]


class _Close(Exception):
    """End the conversation (after sending what is pending)."""


class _Gone(Exception):
    """The client went away; nothing more can be sent."""


@dataclass(frozen=True, slots=True)
class Runtime:
    """What every session of a server shares."""

    config: ServerConfig
    context: ServerContext
    runner: HookRunner
    limiter: ConnectionLimiter
    ssl_context: ssl.SSLContext | None = None
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(default=())


_DEFAULT_LISTENER = Listener(address="127.0.0.1:0")


@dataclass(slots=True)
class _Chunking:
    """BDAT state of the current transaction."""

    size: int = 0
    refusal: Reply | None = None


class Session:
    """The conversation with one client. Create it, then ``await session.run()``."""

    __slots__ = (
        "_admitted",
        "_auth_failures",
        "_chunking",
        "_connected",
        "_greeting_refused",
        "_idle_wait",
        "_info",
        "_io_scope",
        "_mail_params",
        "_out",
        "_rcpt_params",
        "_stopped_idle",
        "_stopping",
        "_trace",
        "_wait_seconds",
        "cancel_scope",
        "config",
        "conn",
        "lines",
        "listener",
        "runner",
        "runtime",
        "stream",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        runtime: Runtime,
        remote: Peer,
        local: Peer,
        listener: Listener = _DEFAULT_LISTENER,
    ) -> None:
        self.stream = stream
        self.runtime = runtime
        self.listener = listener
        self.config = runtime.config
        self.runner = runtime.runner
        self.conn = Connection(runtime.context, remote, local)
        self.lines = LineBuffer(512)
        self.cancel_scope = trio.CancelScope()
        self._out: list[bytes] = []
        self._stopping = False
        self._io_scope = trio.CancelScope()
        self._idle_wait = False
        self._stopped_idle = False
        self._wait_seconds = 0.0
        self._greeting_refused = False
        self._admitted = False
        self._trace = logger.isEnabledFor(Level.PROTOCOL)
        self._info = logger.isEnabledFor(Level.INFO)
        self._connected = False
        self._auth_failures = 0
        self._chunking: _Chunking | None = None
        self._mail_params = MAIL_PARAMETERS
        self._rcpt_params = RCPT_PARAMETERS

    # --- I/O ----------------------------------------------------------------------------------

    def reply(self, reply: Reply) -> None:
        self._out.append(reply.wire)

    async def flush(self) -> None:
        if not self._out:
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise _Gone from None

    async def receive(self, seconds: float) -> bytes:
        """Flush pending replies, then wait up to ``seconds`` for bytes (b"" at end of stream).

        Between transactions the wait also ends when the server shuts down.
        """
        idle = self.conn.transaction is None
        if idle and self._stopping:
            self.reply(R.SHUTTING_DOWN)
            raise _Close
        # One long-lived cancel scope is re-armed for each wait (cheaper than a new one each
        # time); when it fires, the conversation ends and run() answers 421.
        scope = self._io_scope
        self._wait_seconds = seconds
        self._idle_wait = idle
        scope.deadline = trio.current_time() + seconds
        try:
            await self.flush()
            data = await self.stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise _Gone from None
        finally:
            scope.deadline = math.inf
            self._idle_wait = False
        if self._stopped_idle:
            # stop() cancelled this wait just as a command arrived: the cancellation would hit
            # whatever runs next, so end here, between transactions, as stop() meant to.
            self.reply(R.SHUTTING_DOWN)
            raise _Close
        return bytes(data)

    def stop(self) -> None:
        """Ask the session to end: at once if it is between transactions, else after this one."""
        self._stopping = True
        if self._idle_wait:
            self._stopped_idle = True
            self._io_scope.cancel()

    def _wait_ended(self) -> None:
        """The I/O scope fired: a client too slow, or a shutdown while idle."""
        if self._stopped_idle:
            self.reply(R.SHUTTING_DOWN)
        else:
            self.conn.lognotice(f"client timed out after {self._wait_seconds:g}s")
            self.reply(R.TIMEOUT)

    async def _last_flush(self) -> None:
        stream = self.stream
        if isinstance(stream, SocketStream) and self._out:
            data = b"".join(self._out)
            sent = stream.send_nowait(data)
            if sent == len(data):
                self._out.clear()
                return
            self._out[:] = [data[sent:]]
        with trio.move_on_after(10):
            with contextlib.suppress(_Gone):
                await self.flush()

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
                except _Close:
                    pass
                except _Gone:
                    raise
                except Exception as exc:
                    conn.logcrit(f"session error: {exc!r}")
                    self.reply(R.INTERNAL_ERROR)
                await self._last_flush()
        except _Gone:
            conn.loginfo("client went away")
        finally:
            conn.closing = True
            if self._admitted:
                self.runtime.limiter.release(conn.remote.ip)
            if conn.transaction is not None or (self._connected and self.runner.has("disconnect")):
                with trio.CancelScope(shield=True):
                    await self._end_transaction()
                    if self._connected:
                        await self.runner.run("disconnect", conn)
            if isinstance(self.stream, SocketStream):
                self.stream.close()
            else:
                await trio.aclose_forcefully(self.stream)
            if self._info:
                conn.loginfo(
                    f"disconnect from {conn.remote} ({conn.transaction_count} transactions)"
                )

    async def _start(self) -> bool:
        """PROXY header, per-address limits and implicit TLS; False to hang up at once."""
        conn = self.conn
        if self.listener.proxy_protocol and not await self._read_proxy_header():
            return False
        refusal = self.runtime.limiter.admit(conn.remote.ip)
        if refusal is not None:
            conn.lognotice(f"refused {conn.remote}: {refusal.text}")
            self.reply(refusal)
            await self.flush()
            return False
        self._admitted = True
        if self.listener.tls == "implicit":
            return await self._handshake()
        return True

    async def _read_proxy_header(self) -> bool:
        conn = self.conn
        try:
            peer = ipaddress.ip_address(conn.remote.ip)
        except ValueError:
            peer = None
        if peer is None or not any(peer in net for net in self.runtime.trusted_proxies):
            conn.lognotice(f"refused {conn.remote}: not a trusted PROXY protocol sender")
            return False
        reader = ProxyHeaderReader()
        with trio.move_on_after(self.config.proxy.timeout):
            while True:
                try:
                    data = await self.stream.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return False
                if not data:
                    return False
                try:
                    info = reader.feed(bytes(data))
                except ProtocolError as exc:
                    conn.lognotice(f"bad PROXY header from {conn.remote}: {exc.text}")
                    return False
                if info is not None:
                    break
        if info is None:
            conn.lognotice(f"no PROXY header from {conn.remote} in time")
            return False
        if info.source is not None:
            proxy = conn.remote
            conn.remote = Peer(*info.source)
            if info.destination is not None:
                conn.local = Peer(*info.destination)
            conn.loginfo(f"PROXY v{info.version}: client {conn.remote} via {proxy}")
        self.lines.feed(reader.leftover)
        return True

    async def _handshake(self) -> bool:
        """TLS on the current stream; False (after logging) if it fails."""
        context = self.runtime.ssl_context
        assert context is not None
        tls = trio.SSLStream(self.stream, context, server_side=True)
        with trio.move_on_after(self.config.tls.handshake_timeout) as scope:
            try:
                await tls.do_handshake()
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.conn.lognotice(
                    f"TLS handshake with {self.conn.remote} failed: {exc.__cause__!r}"
                )
                return False
        if scope.cancelled_caught:
            self.conn.lognotice(f"TLS handshake with {self.conn.remote} timed out")
            return False
        self.stream = tls
        cipher = tls.cipher()
        version = tls.version()
        self.conn.tls = TLSInfo(
            version or "TLS", cipher[0] if cipher else "unknown", cipher[2] if cipher else None
        )
        self.conn.loginfo(f"TLS established: {self.conn.tls.version} {self.conn.tls.cipher}")
        return True

    async def _talked_early(self) -> bool:
        """True if the client sent anything before the greeting (waiting ``greeting_delay``)."""
        if len(self.lines):
            return True
        delay = self.config.limits.greeting_delay
        if delay > 0:
            with trio.move_on_after(delay):
                try:
                    data = await self.stream.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    raise _Gone from None
                if not data:
                    raise _Gone
                return True
            return False
        if isinstance(self.stream, SocketStream):
            try:
                return bool(self.stream.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
            except OSError:  # nothing there (EAGAIN), or a reset the next read reports
                return False
        return False

    async def _converse(self) -> None:
        conn = self.conn
        self._connected = True
        await self.runner.run("connect_init", conn)
        refused = False
        if self.runner.has("lookup_rdns"):
            decision = await self.runner.run("lookup_rdns", conn)
            if decision.verdict is Verdict.OK and isinstance(decision.result.value, str):
                conn.remote.host = decision.result.value
            else:
                refused = await self._refused_at_connect(decision, R.RDNS_DENY, R.RDNS_DENYSOFT)
        if not refused:
            decision = await self.runner.run("connect", conn)
            if await self._talked_early():
                conn.lognotice(f"refused {conn.remote}: talked before the greeting")
                self.reply(R.EARLY_TALKER)
                raise _Close
            refused = await self._refused_at_connect(decision, R.CONNECT_DENY, R.CONNECT_DENYSOFT)
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
            raise _Close
        refusal = self._refusal(decision, hard, soft)
        if verdict.is_temporary or verdict.disconnects:
            self.reply(
                Reply(
                    421 if verdict.is_temporary else refusal.code, refusal.lines, refusal.enhanced
                )
            )
            raise _Close
        self.reply(refusal)
        self._greeting_refused = True
        return True

    async def _command_loop(self) -> None:
        limits = self.config.limits
        lines = self.lines
        deadline = trio.current_time() + limits.command_timeout
        while True:
            line = lines.next_line()
            if line is None:
                # The whole line must arrive in time, however slowly it trickles in.
                data = await self.receive(max(deadline - trio.current_time(), 0))
                if not data:
                    return
                lines.feed(data)
                continue
            deadline = trio.current_time() + limits.command_timeout
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
            if self._greeting_refused and command.verb != "QUIT":
                self.error(R.BAD_SEQUENCE_GREETING)
                continue
            handler = _COMMANDS.get(command.verb)
            try:
                if handler is None:
                    await self._unrecognized(command.verb, command.argument)
                else:
                    await handler(self, command.argument)
            except ProtocolError as exc:
                self.error(Reply.of(exc.code, exc.text, exc.enhanced))

    def error(self, reply: Reply) -> None:
        """Answer a client error and count it; too many errors end the connection."""
        self.reply(reply)
        self.conn.errors += 1
        if self.conn.errors >= self.config.limits.max_errors:
            self.conn.lognotice(f"too many errors ({self.conn.errors}) from {self.conn.remote}")
            self.reply(R.TOO_MANY_ERRORS)
            raise _Close

    # --- verdicts to replies -------------------------------------------------------------------

    def _refusal(self, decision: Decision, hard: Reply, soft: Reply) -> Reply:
        result = decision.result
        base = soft if result.verdict.is_temporary else hard
        code = base.code
        if result.code is not None:
            if result.code // 100 == base.code // 100:
                code = result.code
            else:
                self.conn.logwarn(
                    f"{decision.plugin}: reply code {result.code} ignored for {result.verdict.name}"
                )
        if result.verdict is Verdict.DENYSOFTDISCONNECT:
            code = 421
        return Reply(code, result.message or base.lines, base.enhanced)

    def _refuse(self, decision: Decision, hard: Reply, soft: Reply) -> None:
        """Send the refusal for a denying ``decision``; close if the verdict says so."""
        if decision.verdict is Verdict.DISCONNECT:
            raise _Close
        self.reply(self._refusal(decision, hard, soft))
        if decision.verdict.disconnects:
            raise _Close

    @staticmethod
    def _refuses(decision: Decision) -> bool:
        verdict = decision.verdict
        if verdict is Verdict.CONT or verdict is Verdict.OK:
            return False
        return verdict.is_denial or verdict is Verdict.DISCONNECT

    def _accept(self, decision: Decision, default: Reply) -> Reply:
        result = decision.result
        if result.message is None and result.code is None:
            return default
        code = result.code if result.code is not None and result.code < 400 else default.code
        return Reply(code, result.message or default.lines, default.enhanced)

    # --- transaction ---------------------------------------------------------------------------

    async def _end_transaction(self) -> None:
        self._chunking = None
        txn = self.conn.transaction
        if txn is None:
            return
        try:
            await self.runner.run("reset_transaction", self.conn)
        finally:
            txn.discard()
            self.conn.transaction = None

    def _require_no_argument(self, verb: str, argument: str) -> None:
        if argument:
            raise ProtocolError(501, "5.5.4", R.NO_ARGUMENTS.format(verb))

    # --- commands --------------------------------------------------------------------------------

    async def _helo(self, argument: str) -> None:
        await self._hello("HELO", argument)

    async def _ehlo(self, argument: str) -> None:
        await self._hello("EHLO", argument)

    async def _hello(self, verb: str, argument: str) -> None:
        conn = self.conn
        name = parse_hello(argument, verb)
        await self._end_transaction()
        decision = await self.runner.run(verb.lower(), conn, name)
        if self._refuses(decision):
            conn.hello = None
            self._refuse(decision, R.HELO_DENY, R.HELO_DENYSOFT)
            return
        conn.hello = Hello("EHLO" if verb == "EHLO" else "HELO", name)
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
        await self.runner.run("capabilities", conn, capabilities)
        keywords = {c.split(" ", 1)[0].upper() for c in capabilities}
        self._mail_params = frozenset(
            param for keyword, param in _MAIL_PARAMS_BY_KEYWORD.items() if keyword in keywords
        ) | (_DSN_MAIL_PARAMS if "DSN" in keywords else frozenset())
        self._rcpt_params = RCPT_PARAMETERS if "DSN" in keywords else frozenset()
        self.reply(Reply(250, (greeting, *capabilities)))

    async def _mail(self, argument: str) -> None:
        conn = self.conn
        if conn.hello is None:
            self.error(R.HELO_FIRST)
            return
        if conn.transaction is not None:
            self.error(R.NESTED_MAIL)
            return
        if self.listener.tls == "required" and conn.tls is None:
            self.error(R.STARTTLS_FIRST)
            return
        if self.listener.require_auth and conn.authenticated_user is None:
            self.error(R.AUTH_FIRST)
            return
        mail = parse_mail(argument, self._mail_params)
        params = mail.params
        if params.extra:
            raise ProtocolError(555, "5.5.4", f"Unsupported parameter {next(iter(params.extra))}")
        if not mail.sender.is_ascii and not params.smtputf8:
            self.reply(R.NEEDS_SMTPUTF8)
            return
        if params.size is not None and params.size > self.config.limits.max_message_size:
            self.reply(R.TOO_BIG)
            return
        conn.transaction_count += 1
        data = self.config.data
        conn.transaction = Transaction(
            f"{conn.uuid}.{conn.transaction_count}",
            mail.sender,
            params,
            spool_threshold=data.spool_threshold,
            spool_dir=data.spool_dir,
        )
        decision = await self.runner.run("mail", conn, mail.sender, params)
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
        if txn is None:
            self.error(R.MAIL_FIRST)
            return
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
        hard = Reply.of(550, f"recipient {path} denied", "5.7.1")
        soft = Reply.of(450, R.RCPT_DENYSOFT_TEXT.format(path), "4.7.1")
        decision = await self.runner.run("rcpt", conn, recipient, rcpt.params)
        if self._refuses(decision):
            self._refuse(decision, hard, soft)
            return
        if decision.verdict is not Verdict.OK and not conn.relaying:
            conn.logalert(f"no plugin accepted {path} and relaying is not allowed")
            self.reply(Reply.of(550, f"{path}: I cannot deliver for that user", "5.7.1"))
            return
        check = await self.runner.run("rcpt_ok", conn, recipient)
        if self._refuses(check):
            self._refuse(check, hard, soft)
            return
        txn.recipients.append(Recipient(recipient, rcpt.params))
        self.reply(self._accept(decision, Reply.of(250, f"recipient {path} OK", "2.1.5")))

    async def _data(self, argument: str) -> None:
        conn = self.conn
        self._require_no_argument("DATA", argument)
        txn = conn.transaction
        if txn is None:
            self.error(R.MAIL_FIRST)
            return
        if not txn.recipients:
            self.error(R.NO_RECIPIENTS)
            return
        if self._chunking is not None:
            self.error(R.DATA_AFTER_BDAT)
            return
        decision = await self.runner.run("data", conn)
        if self._refuses(decision):
            await self._end_transaction()
            self._refuse(decision, R.DATA_DENY, R.DATA_DENYSOFT)
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
                raise _Gone
        self.lines.feed(reader.leftover)
        return reader

    def _final_refusal(self, decision: Decision, hard: Reply, soft: Reply) -> Reply:
        """The refusal to answer a message with; sent at once and closing if it disconnects."""
        if decision.verdict.disconnects:
            self._refuse(decision, hard, soft)
        return self._refusal(decision, hard, soft)

    async def _finish_message(self, txn: Transaction, reader: DataReader) -> Reply:
        conn = self.conn
        if reader.too_big:
            conn.lognotice(f"message too big: {reader.size} octets")
            decision = await self.runner.run("max_data_exceeded", conn)
            if self._refuses(decision):
                return self._final_refusal(decision, R.TOO_BIG, R.TOO_BIG_SOFT)
            return R.TOO_BIG
        if reader.bare_endings and self.config.data.bare_line_endings == "reject":
            conn.lognotice("message refused: bare CR or LF in data")
            return R.BARE_ENDINGS
        if reader.long_line:
            conn.lognotice("message refused: line longer than the limit")
            return R.LONG_LINE
        return await self._queue_message(txn)

    async def _queue_message(self, txn: Transaction) -> Reply:
        """Received header, data_post, then queue or queue_outbound: the final reply."""
        conn = self.conn
        txn.add_header("Received", self._received_header(txn))
        decision = await self.runner.run("data_post", conn)
        if self._refuses(decision):
            return self._final_refusal(decision, R.DATA_POST_DENY, R.DATA_POST_DENYSOFT)
        hook = "queue_outbound" if conn.relaying else "queue"
        decision = await self.runner.run(hook, conn)
        if self._refuses(decision):
            return self._final_refusal(decision, R.QUEUE_DENY, R.QUEUE_DENYSOFT)
        if decision.verdict is not Verdict.OK:
            conn.logerror(f"no {hook} plugin accepted the message; answering 451")
            return Reply(451, (f"{R.QUEUE_DECLINED.text} ({txn.uuid})",), "4.3.0")
        reply = self._accept(decision, Reply.of(250, f"Message queued as {txn.uuid}", "2.0.0"))
        if self._info:
            conn.loginfo(
                f"queued {txn.uuid}: from {txn.sender.bracketed()} to {len(txn.recipients)} "
                f"recipient(s), {txn.message_size()} octets"
            )
        await self.runner.run("queue_ok", conn, reply.text)
        return reply

    def _received_header(self, txn: Transaction) -> str:
        conn = self.conn
        remote = conn.remote
        hello = conn.hello
        protocol = "ESMTP" if hello is not None and hello.verb == "EHLO" else "SMTP"
        if txn.mail_params.smtputf8:
            protocol = "UTF8SMTP"
        if conn.tls is not None:
            protocol += "S"
        if conn.authenticated_user is not None:
            protocol += "A"
        tls = f"\n\t(using {conn.tls.version} with cipher {conn.tls.cipher})" if conn.tls else ""
        recipient = (
            f"\n\tfor {txn.recipients[0].address.bracketed()}" if len(txn.recipients) == 1 else ""
        )
        return (
            f"from {hello.host if hello else 'unknown'} ({remote.host or 'unknown'} [{remote.ip}])"
            f"\n\tby {self.config.hostname} (tsmtp) with {protocol} id {txn.uuid}{tls}{recipient};"
            f"\n\t{_now_rfc5322()}"
        )

    # --- STARTTLS (RFC 3207) ------------------------------------------------------------------

    def _starttls_available(self) -> bool:
        return (
            self.conn.tls is None
            and self.runtime.ssl_context is not None
            and self.listener.tls in ("offered", "required")
        )

    async def _starttls(self, argument: str) -> None:
        conn = self.conn
        if conn.tls is not None:
            self.error(R.TLS_ALREADY)
            return
        if not self._starttls_available():
            self.error(R.NOT_IMPLEMENTED)
            return
        self._require_no_argument("STARTTLS", argument)
        self.reply(R.STARTTLS_READY)
        await self.flush()
        injected = self.lines.take()
        if injected:
            conn.lognotice(f"discarded {len(injected)} octets sent before the TLS handshake")
        if not await self._handshake():
            raise _Close
        # RFC 3207 section 4.2: forget everything learned before TLS.
        await self._end_transaction()
        conn.hello = None

    # --- AUTH (RFC 4954) ------------------------------------------------------------------------

    def _auth_available(self) -> bool:
        policy = self.listener.auth
        return bool(self.config.auth.mechanisms) and (
            policy == "always" or (policy == "tls" and self.conn.tls is not None)
        )

    async def _read_response(self, challenge: str) -> bytes:
        """Send a 334 challenge and read the client's base64 line."""
        self.reply(Reply.of(334, challenge))
        lines = self.lines
        lines.max_line = 12288  # RFC 4954 section 4
        try:
            deadline = trio.current_time() + self.config.limits.command_timeout
            while (line := lines.next_line()) is None:
                data = await self.receive(max(deadline - trio.current_time(), 0))
                if not data:
                    raise _Gone
                lines.feed(data)
        finally:
            lines.max_line = 512
        if line is LINE_TOO_LONG:
            raise ProtocolError(500, "5.5.6", "Authentication exchange line is too long")
        assert isinstance(line, bytes)
        return decode_response(line)

    async def _auth(self, argument: str) -> None:
        conn = self.conn
        if not self._auth_available():
            needs_tls = self.listener.auth == "tls" and conn.tls is None
            self.error(
                R.AUTH_NEEDS_TLS if needs_tls and self.config.auth.mechanisms else R.NOT_IMPLEMENTED
            )
            return
        if conn.authenticated_user is not None:
            self.error(R.ALREADY_AUTHENTICATED)
            return
        if conn.transaction is not None:
            self.error(R.AUTH_IN_TRANSACTION)
            return
        mechanism, _, initial = argument.partition(" ")
        mechanism = mechanism.upper()
        if mechanism not in self.config.auth.mechanisms:
            self.error(R.AUTH_UNKNOWN_MECHANISM)
            return
        if mechanism == "PLAIN":
            response = (
                decode_response(initial.encode()) if initial else await self._read_response("")
            )
            authzid, username, password = parse_plain(response)
        else:
            user = (
                decode_response(initial.encode())
                if initial
                else await self._read_response("VXNlcm5hbWU6")
            )
            username, authzid = decode_text(user), ""
            password = decode_text(await self._read_response("UGFzc3dvcmQ6"))
        credentials = Credentials(mechanism, username, password, authzid)
        decision = await self.runner.run("auth", conn, credentials)
        if decision.verdict is Verdict.OK:
            conn.authenticated_user = authzid or username
            if self.config.auth.relay:
                conn.relaying = True
            conn.loginfo(f"authenticated as {conn.authenticated_user!r} ({mechanism})")
            self.reply(self._accept(decision, R.AUTH_OK))
            return
        if decision.verdict.disconnects:
            self._refuse(decision, R.AUTH_FAILED, R.AUTH_TEMPFAIL)
        if decision.verdict.is_temporary:
            self.reply(self._refusal(decision, R.AUTH_FAILED, R.AUTH_TEMPFAIL))
            return
        self._auth_failures += 1
        conn.lognotice(f"AUTH {mechanism} failed for {username!r} from {conn.remote}")
        refusal = (
            R.AUTH_FAILED
            if decision.verdict is Verdict.CONT
            else self._refusal(decision, R.AUTH_FAILED, R.AUTH_TEMPFAIL)
        )
        self.reply(refusal)
        if self._auth_failures >= self.config.limits.max_auth_failures:
            self.reply(R.AUTH_TOO_MANY)
            raise _Close

    # --- BDAT (RFC 3030) ------------------------------------------------------------------------

    async def _bdat(self, argument: str) -> None:
        conn = self.conn
        parts = argument.split(" ")
        if (
            not 1 <= len(parts) <= 2
            or not parts[0].isdigit()
            or len(parts[0]) > 18
            or (len(parts) == 2 and parts[1].upper() != "LAST")
        ):
            raise ProtocolError(501, "5.5.4", "Syntax: BDAT size [LAST]")
        size, last = int(parts[0]), len(parts) == 2
        txn = conn.transaction
        refusal: Reply | None = None
        if txn is None:
            refusal = R.MAIL_FIRST
        elif not txn.recipients:
            refusal = R.NO_RECIPIENTS
        elif self._chunking is None:
            self._chunking = _Chunking()
            decision = await self.runner.run("data", conn)
            if self._refuses(decision):
                if decision.verdict.disconnects:
                    self._refuse(decision, R.DATA_DENY, R.DATA_DENYSOFT)
                self._chunking.refusal = self._refusal(decision, R.DATA_DENY, R.DATA_DENYSOFT)
        chunking = self._chunking
        if refusal is not None or txn is None or chunking is None:
            await self._read_chunk(size, None)  # the chunk still arrives: consume it
            self.error(refusal or R.MAIL_FIRST)
            return
        limit = self.config.limits.max_message_size
        sink = (
            txn.body.write if chunking.refusal is None and chunking.size + size <= limit else None
        )
        await self._read_chunk(size, sink)
        chunking.size += size
        if chunking.refusal is None and chunking.size > limit:
            decision = await self.runner.run("max_data_exceeded", conn)
            chunking.refusal = (
                self._refusal(decision, R.TOO_BIG, R.TOO_BIG_SOFT)
                if self._refuses(decision)
                else R.TOO_BIG
            )
        if not last:
            if chunking.refusal is not None:
                self.reply(chunking.refusal)
            else:
                self.reply(Reply.of(250, f"{size} octets received", "2.0.0"))
            return
        if chunking.refusal is not None:
            self.reply(chunking.refusal)
        else:
            self.reply(await self._queue_message(txn))
        await self._end_transaction()

    async def _read_chunk(self, size: int, sink: Callable[[bytes], None] | None) -> None:
        """Read exactly ``size`` octets following a BDAT command into ``sink`` (or nowhere)."""
        data = self.lines.take()
        limits = self.config.limits
        deadline = trio.current_time() + limits.data_total_timeout
        remaining = size
        while True:
            piece, data = data[:remaining], data[remaining:]
            if sink is not None and piece:
                sink(piece)
            remaining -= len(piece)
            if not remaining:
                break
            data = await self.receive(min(limits.data_timeout, deadline - trio.current_time()))
            if not data:
                raise _Gone
        self.lines.feed(data)

    async def _rset(self, argument: str) -> None:
        self._require_no_argument("RSET", argument)
        decision = await self.runner.run("rset", self.conn)
        await self._end_transaction()
        if decision.verdict.disconnects:
            self._refuse(decision, R.RSET_DENY, R.RSET_DENYSOFT)
        self.reply(R.OK)

    async def _noop(self, argument: str) -> None:
        decision = await self.runner.run("noop", self.conn)
        if self._refuses(decision):
            self._refuse(decision, R.NOOP_DENY, R.NOOP_DENYSOFT)
            return
        self.reply(self._accept(decision, R.OK))

    async def _quit(self, argument: str) -> None:
        await self.runner.run("quit", self.conn)
        self.reply(Reply.of(221, f"{self.config.hostname} closing connection", "2.0.0"))
        raise _Close

    async def _vrfy(self, argument: str) -> None:
        if not argument:
            raise ProtocolError(501, "5.5.4", "Syntax: VRFY address")
        decision = await self.runner.run("vrfy", self.conn, argument)
        if self._refuses(decision):
            self._refuse(decision, R.VRFY_DENY, R.VRFY_DENYSOFT)
        elif decision.verdict is Verdict.OK:
            self.reply(self._accept(decision, Reply.of(250, "User OK", "2.1.5")))
        else:
            self.reply(R.VRFY_DEFAULT)

    async def _help(self, argument: str) -> None:
        self.reply(R.HELP)

    async def _unrecognized(self, verb: str, argument: str) -> None:
        conn = self.conn
        decision = await self.runner.run("unrecognized_command", conn, verb, argument)
        if decision.verdict is Verdict.HOOK:
            name = decision.result.value
            if not isinstance(name, str) or name == "unrecognized_command":
                conn.logerror(
                    f"{decision.plugin}: HOOK needs the name of another hook, got {name!r}"
                )
                self.reply(R.UNRECOGNIZED_SOFT)
                return
            decision = await self.runner.run(name, conn, verb, argument)
        if decision.verdict is Verdict.OK:
            self.reply(self._accept(decision, R.OK))
            return
        if self._refuses(decision):
            hard = Reply(
                521 if decision.verdict is Verdict.DENYDISCONNECT else 500,
                R.UNRECOGNIZED.lines,
                "5.5.1",
            )
            self._refuse(decision, hard, R.UNRECOGNIZED_SOFT)
            self.conn.errors += 1
            return
        conn.logdebug(f"unrecognized command {verb!r}")
        self.error(R.NOT_IMPLEMENTED if verb in _NOT_IMPLEMENTED else R.UNRECOGNIZED)


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
