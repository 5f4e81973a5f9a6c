"""A lean Trio stream over a connected TCP socket, for the per-command hot path.

It keeps Trio's rules (a checkpoint in every call, cancellation honoured while waiting) but
talks to the non-blocking socket directly, which saves a few layers per send and receive.
"""

from __future__ import annotations

import socket

import trio
from typing_extensions import override

_RECEIVE = 1 << 16


class SocketStream(trio.abc.HalfCloseableStream):
    """A :class:`trio.abc.HalfCloseableStream` on a connected, non-blocking socket it owns."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.socket = sock

    @override
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        sock = self.socket
        if sock.fileno() < 0:
            raise trio.ClosedResourceError("the stream is closed")
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        view = memoryview(data)
        total, sent = len(view), 0
        while sent < total:
            try:
                sent += sock.send(view[sent:] if sent else view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                waited = True
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()

    @override
    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self.socket)

    @override
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        sock = self.socket
        if sock.fileno() < 0:
            raise trio.ClosedResourceError("the stream is closed")
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            try:
                data = sock.recv(max_bytes or _RECEIVE)
                break
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                waited = True
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    @override
    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc

    def send_nowait(self, data: bytes) -> int:
        """Send what the socket takes right now, without waiting; 0 if it takes nothing."""
        try:
            return self.socket.send(data)
        except OSError:  # full (EAGAIN) or broken: the caller falls back to send_all
            return 0

    def close(self) -> None:
        """Close at once (synchronous, so it also works in a cancelled scope)."""
        if self.socket.fileno() >= 0:
            trio.lowlevel.notify_closing(self.socket)
            self.socket.close()

    @override
    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()
