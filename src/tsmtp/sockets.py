"""Opening listening sockets, for one process or for several nodes."""

from __future__ import annotations

import socket
from collections.abc import Sequence

from .config import Listener

Sockets = list[tuple[socket.socket, Listener]]


def open_sockets(
    listeners: Sequence[Listener], copies: int = 1, backlog: int = 1024
) -> list[Sockets]:
    """Bind and listen on every configured address; non-blocking stdlib sockets.

    With ``copies`` > 1 each address is bound that many times with SO_REUSEPORT, one set per
    node: the kernel spreads new connections evenly over the copies, and as the master keeps
    them all open, connections waiting on a node that dies are served by its replacement.
    """
    sets: list[Sockets] = [[] for _ in range(copies)]
    try:
        for settings in listeners:
            host, port = settings.host_port
            infos = socket.getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            for family, kind, proto, _, address in infos:
                for copy in sets:
                    sock = socket.socket(family, kind, proto)
                    copy.append((sock, settings))
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if copies > 1:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind(address)
                    address = sock.getsockname()  # port 0: the others take the same port
                    sock.listen(backlog)
                    sock.setblocking(False)
    except BaseException:
        for copy in sets:
            for sock, _ in copy:
                sock.close()
        raise
    return sets
