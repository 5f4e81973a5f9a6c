"""STARTTLS (RFC 3207) and AUTH (RFC 4954)."""

from __future__ import annotations

import trio

from .. import hooks as H
from .. import replies as R
from ..hookargs import Credentials
from ..protocol import (
    LINE_TOO_LONG,
    ProtocolError,
    Reply,
    sequencing,
)
from ..protocol.sasl import decode_identity, decode_response, decode_text, parse_plain
from ..runner import Decision
from ..verdict import Verdict
from .base import ClientGone, CloseSession, SessionBase


class TLSAndAuth(SessionBase):
    """STARTTLS (RFC 3207) and AUTH (RFC 4954)."""

    __slots__ = ()

    async def _starttls(self, argument: str) -> None:
        conn = self.conn
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
            raise CloseSession
        await self._reset(sequencing.RESETS["STARTTLS"])

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
                    raise ClientGone
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
            username, authzid = decode_identity(user), ""
            password = decode_text(await self._read_response("UGFzc3dvcmQ6"))
        credentials = Credentials(mechanism, username, password, authzid)
        decision = await self.runner.run(H.auth, conn, credentials)
        # Acting as someone else needs the auth hook's explicit consent: OK with that identity
        # as its value. A hook that only checked the password gives none.
        if (
            decision.verdict is Verdict.OK
            and authzid
            and authzid != username
            and decision.result.value != authzid
        ):
            conn.lognotice(
                f"AUTH {mechanism}: {username!r} may not act as {authzid!r} "
                "(no auth hook allowed that identity)"
            )
            decision = Decision(Verdict.DENY("Not authorized to act as that identity"))
        if decision.verdict is Verdict.OK:
            self._relaying_before_auth = conn.relaying
            conn._authenticated_user = authzid or username
            if self.config.auth.relay:
                conn.relaying = True
            conn.loginfo(f"authenticated as {conn.authenticated_user!r} ({mechanism})")
            self.reply(self._accept(decision, R.AUTH_OK))
            return
        if decision.verdict.disconnects:
            self._refuse(decision, H.auth.deny, H.auth.denysoft)
        if decision.verdict.is_temporary:
            self.reply(self._refusal(decision, H.auth.deny, H.auth.denysoft))
            return
        self._auth_failures += 1
        conn.lognotice(f"AUTH {mechanism} failed for {username!r} from {conn.remote}")
        refusal = (
            H.auth.deny
            if decision.verdict is Verdict.CONT
            else self._refusal(decision, H.auth.deny, H.auth.denysoft)
        )
        self.reply(refusal)
        if self._auth_failures >= self.config.limits.max_auth_failures:
            self.reply(R.AUTH_TOO_MANY)
            raise CloseSession
