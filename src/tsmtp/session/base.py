"""What every part of a session shares: its state, its I/O, and turning verdicts into replies."""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import math
import ssl
import time
from dataclasses import dataclass, field

import trio

from .. import hooks as H
from .. import replies as R
from ..config import Listener, ServerConfig
from ..connection import Connection, Peer, ServerContext, TLSInfo
from ..limits import ConnectionLimiter
from ..log import Level, logger
from ..occupancy import Occupancy
from ..protocol import (
    MAIL_PARAMETERS,
    RCPT_PARAMETERS,
    LineBuffer,
    ProtocolError,
    Reply,
    sequencing,
)
from ..runner import Decision, HookRunner
from ..stream import SocketStream
from ..transaction import Transaction
from ..verdict import Verdict

RECEIVE_SIZE = 1 << 16


_date_cache: tuple[int, str] = (0, "")


def _now_rfc5322() -> str:
    """The current date for a Received header, formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, localtime=True))
    return _date_cache[1]


class CloseSession(Exception):
    """End the conversation (after sending what is pending)."""


class ClientGone(Exception):
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
    occupancy: Occupancy = field(default_factory=Occupancy)


_DEFAULT_LISTENER = Listener(address="127.0.0.1:0")


@dataclass(slots=True)
class ChunkingState:
    """BDAT state of the current transaction."""

    size: int = 0
    refusal: Reply | None = None


class SessionBase:
    """State, I/O and the shared helpers of a session; the commands live in mixins."""

    __slots__ = (
        "_admitted_as",
        "_auth_failures",
        "_chunking",
        "_connected",
        "_errors",
        "_greeting_refused",
        "_idle",
        "_idle_wait",
        "_info",
        "_io_scope",
        "_mail_params",
        "_out",
        "_rcpt_params",
        "_refused_recipients",
        "_relaying_before_auth",
        "_stop_reply",
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
        self._idle = False
        self._stop_reply = R.SHUTTING_DOWN
        self._stopped_idle = False
        self._wait_seconds = 0.0
        self._greeting_refused = False
        self._admitted_as: str | None = None
        self._errors = 0
        self._refused_recipients = 0
        self._trace = logger.isEnabledFor(Level.PROTOCOL)
        self._info = logger.isEnabledFor(Level.INFO)
        self._connected = False
        self._auth_failures = 0
        self._relaying_before_auth = False
        self._chunking: ChunkingState | None = None
        self._mail_params = MAIL_PARAMETERS
        self._rcpt_params = RCPT_PARAMETERS

    # --- I/O ----------------------------------------------------------------------------------

    def reply(self, reply: Reply) -> None:
        """Queue ``reply``; every 4xx or 5xx counts toward ``max_errors``."""
        self._out.append(reply.wire)
        if reply.code >= 400:
            self._errors += 1

    async def flush(self) -> None:
        if not self._out:
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ClientGone from None

    async def receive(self, seconds: float) -> bytes:
        """Flush pending replies, then wait up to ``seconds`` for bytes (b"" at end of stream).

        Between transactions the wait also ends when the server shuts down.
        """
        idle = self.conn.transaction is None
        if idle and self._stopping:
            self.reply(self._stop_reply)
            raise CloseSession
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
            raise ClientGone from None
        finally:
            scope.deadline = math.inf
            self._idle_wait = False
        if self._stopped_idle:
            # stop() cancelled this wait just as a command arrived: the cancellation would hit
            # whatever runs next, so end here, between transactions, as stop() meant to.
            self.reply(self._stop_reply)
            raise CloseSession
        return bytes(data)

    def stop(self, reply: Reply = R.SHUTTING_DOWN) -> None:
        """Ask the session to end: at once if it is between transactions, else after this one."""
        self._stopping = True
        if self._stop_reply is R.SHUTTING_DOWN:
            self._stop_reply = reply
        if self._idle_wait:
            self._stopped_idle = True
            self._io_scope.cancel()

    def evict(self) -> None:
        """Close this connection, idle outside a transaction, to make room for a new one."""
        self.conn.lognotice(f"closing idle connection from {self.conn.remote} to make room")
        self._idle = False
        self.stop(R.EVICTED)

    def under_stress(self) -> None:
        """The server is stressed: a wait for a command gets at most the stress timeout."""
        if self._idle_wait:
            limit = trio.current_time() + self.config.limits.stress_command_timeout
            scope = self._io_scope
            if limit < scope.deadline:
                self._wait_seconds = self.config.limits.stress_command_timeout
                scope.deadline = limit

    def _idle_from_now(self) -> None:
        """Waiting for a command outside a transaction: a candidate to make room, newest."""
        if not self._idle:
            self._idle = True
            self.runtime.occupancy.idle_started(self)

    def _idle_over(self) -> None:
        if self._idle:
            self._idle = False
            self.runtime.occupancy.idle_ended(self)

    def _wait_ended(self) -> None:
        """The I/O scope fired: a client too slow, or a shutdown while idle."""
        if self._stopped_idle:
            self.reply(self._stop_reply)
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
            with contextlib.suppress(ClientGone):
                await self.flush()

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
        info = TLSInfo(
            version or "TLS", cipher[0] if cipher else "unknown", cipher[2] if cipher else None
        )
        self.conn._tls = info
        self.conn.loginfo(f"TLS established: {info.version} {info.cipher}")
        return True

    def error(self, reply: Reply) -> None:
        """Answer a client error (counted by :meth:`reply`)."""
        self.reply(reply)

    def _check_error_limits(self) -> None:
        """After each command: too many refusals end the connection (Postfix's error limit)."""
        limits = self.config.limits
        # Under stress the first error ends the connection, as Postfix's hard limit of 1 does.
        if self._errors >= (1 if self.runtime.occupancy.stressed else limits.max_errors):
            self.conn.lognotice(f"too many errors ({self._errors}) from {self.conn.remote}")
            self.reply(R.TOO_MANY_ERRORS)
            raise CloseSession
        if self._refused_recipients >= limits.max_refused_recipients:
            self.conn.lognotice(
                f"too many refused recipients ({self._refused_recipients}) from {self.conn.remote}"
            )
            self.reply(R.TOO_MANY_REFUSED_RECIPIENTS)
            raise CloseSession

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
            raise CloseSession
        self.reply(self._refusal(decision, hard, soft))
        if decision.verdict.disconnects:
            raise CloseSession

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
            await self.runner.run(H.reset_transaction, self.conn, txn)
        finally:
            txn.log_results(self.conn.results)
            txn.discard()
            self.conn._transaction = None

    async def _reset(self, what: sequencing.Reset) -> None:
        """Forget what ``what`` names (the table of resets is in protocol.sequencing)."""
        conn = self.conn
        if sequencing.Reset.TRANSACTION in what:
            await self._end_transaction()
        if sequencing.Reset.GREETING in what:
            conn._hello = None
        if sequencing.Reset.AUTH in what and conn.authenticated_user is not None:
            # What a plain-text AUTH gave goes (the identity, and relaying granted for it);
            # what comes from the connection itself (the address, relay_acl's decision) stays.
            conn.loginfo(f"forgetting AUTH identity {conn.authenticated_user!r}")
            conn._authenticated_user = None
            conn.relaying = self._relaying_before_auth

    # --- facts for the sequencing table (protocol.sequencing.SessionFacts) ---------------------

    @property
    def greeting_refused(self) -> bool:
        return self._greeting_refused

    @property
    def greeted(self) -> bool:
        return self.conn.hello is not None

    @property
    def in_transaction(self) -> bool:
        return self.conn.transaction is not None

    @property
    def has_recipients(self) -> bool:
        txn = self.conn.transaction
        return txn is not None and bool(txn.recipients)

    @property
    def chunking(self) -> bool:
        return self._chunking is not None

    @property
    def tls_active(self) -> bool:
        return self.conn.tls is not None

    @property
    def tls_missing(self) -> bool:
        return self.listener.tls == "required" and self.conn.tls is None

    @property
    def authenticated(self) -> bool:
        return self.conn.authenticated_user is not None

    @property
    def auth_missing(self) -> bool:
        return self.listener.require_auth and self.conn.authenticated_user is None

    def _require_no_argument(self, verb: str, argument: str) -> None:
        if argument:
            raise ProtocolError(501, "5.5.4", R.NO_ARGUMENTS.format(verb))

    def _final_refusal(self, decision: Decision, hard: Reply, soft: Reply) -> Reply:
        """The refusal to answer a message with; sent at once and closing if it disconnects."""
        if decision.verdict.disconnects:
            self._refuse(decision, hard, soft)
        return self._refusal(decision, hard, soft)

    async def _queue_message(self, txn: Transaction) -> Reply:
        """Received header, data_post, then queue or queue_outbound: the final reply."""
        conn = self.conn
        txn.add_header("Received", self._received_header(txn))
        decision = await self.runner.run(H.data_post, conn, txn)
        if self._refuses(decision):
            return self._final_refusal(decision, H.data_post.deny, H.data_post.denysoft)
        # Body filters plugins installed run once here, off the event loop for a large message,
        # so that every queue plugin stores the same, filtered message.
        await txn.apply_body_filters()
        hook = H.queue_outbound if conn.relaying else H.queue
        decision = await self.runner.run(hook, conn, txn)
        if self._refuses(decision):
            return self._final_refusal(decision, hook.deny, hook.denysoft)
        if decision.verdict is not Verdict.OK:
            conn.logerror(f"no {hook.name} plugin accepted the message; answering 451")
            return Reply(451, (f"{R.QUEUE_DECLINED.text} ({txn.uuid})",), "4.3.0")
        reply = self._accept(decision, Reply.of(250, f"Message queued as {txn.uuid}", "2.0.0"))
        if self._info:
            conn.loginfo(
                f"queued {txn.uuid}: from {txn.sender.bracketed()} to {len(txn.recipients)} "
                f"recipient(s), {txn.message_size()} octets"
            )
        await self.runner.run(H.queue_ok, conn, txn, reply.text)
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

    # --- AUTH (RFC 4954) ------------------------------------------------------------------------

    def _auth_available(self) -> bool:
        policy = self.listener.auth
        return bool(self.config.auth.mechanisms) and (
            policy == "always" or (policy == "tls" and self.conn.tls is not None)
        )
