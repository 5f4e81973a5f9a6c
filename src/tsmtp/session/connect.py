"""Before the greeting: PROXY header, per-address limits, implicit TLS, early talkers."""

from __future__ import annotations

import ipaddress
import socket

import trio

from ..connection import Peer
from ..protocol import (
    ProtocolError,
    ProxyHeaderReader,
)
from ..stream import SocketStream
from .base import RECEIVE_SIZE, ClientGone, SessionBase


class ConnectPhase(SessionBase):
    """Before the greeting: PROXY header, per-address limits, implicit TLS, early talkers."""

    __slots__ = ()

    async def _start(self) -> bool:
        """PROXY header, per-address limits and implicit TLS; False to hang up at once."""
        conn = self.conn
        if self.listener.proxy_protocol and not await self._read_proxy_header():
            return False
        limiter = self.runtime.limiter
        # The key is kept here, not read back from conn.remote, which a plugin may rewrite.
        key = limiter.key_for(conn.remote.ip)
        if key is not None:
            refusal = limiter.admit(key)
            if refusal is not None:
                conn.lognotice(f"refused {conn.remote}: {refusal.text}")
                self.reply(refusal)
                await self.flush()
                return False
            self._admitted_as = key
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
            conn._remote = Peer(*info.source)
            if info.destination is not None:
                conn._local = Peer(*info.destination)
            conn.loginfo(f"PROXY v{info.version}: client {conn.remote} via {proxy}")
        self.lines.feed(reader.leftover)
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
                    raise ClientGone from None
                if not data:
                    raise ClientGone
                return True
            return False
        if isinstance(self.stream, SocketStream):
            try:
                return bool(self.stream.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
            except OSError:  # nothing there (EAGAIN), or a reset the next read reports
                return False
        return False
