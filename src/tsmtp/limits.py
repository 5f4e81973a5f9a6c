"""Per-address connection accounting: concurrent connections and connection rate."""

from __future__ import annotations

import ipaddress
import time
from collections import defaultdict, deque

from . import replies as R
from .config import Limits
from .protocol import Reply


class ConnectionLimiter:
    """Admit or refuse a new connection from an address; ``release`` when it ends.

    Addresses are counted by :meth:`key_for`: an IPv4 address as itself, an IPv6 address by
    its ``ipv6_prefix`` network (one host can easily rotate through a /64), and clients in
    ``exempt_networks`` not at all.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._exempt = tuple(ipaddress.ip_network(n, strict=False) for n in limits.exempt_networks)
        self._open: defaultdict[str, int] = defaultdict(int)
        self._recent: defaultdict[str, deque[float]] = defaultdict(deque)

    def key_for(self, ip: str) -> str | None:
        """What the limits count ``ip`` as; None if the address is exempt from them."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return ip  # not an IP (a Unix socket, say): counted as it is
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self._exempt):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            prefix = self.limits.ipv6_prefix
            return str(ipaddress.IPv6Network((address, prefix), strict=False))
        return str(address)

    def admit(self, key: str) -> Reply | None:
        """None if ``key`` may connect (and it is counted), else the reply that refuses it."""
        limits = self.limits
        if self._open.get(key, 0) >= limits.max_connections_per_ip:
            return R.TOO_MANY_FROM_IP
        rate = limits.max_connection_rate_per_ip
        if rate:
            now = time.monotonic()
            recent = self._recent[key]
            while recent and recent[0] <= now - 60:
                recent.popleft()
            if len(recent) >= rate:
                return R.RATE_LIMITED
            recent.append(now)
        self._open[key] += 1
        return None

    def release(self, key: str) -> None:
        """One connection admitted as ``key`` has ended."""
        count = self._open[key] - 1
        if count > 0:
            self._open[key] = count
        else:
            del self._open[key]
            recent = self._recent.get(key)
            if recent is not None and (not recent or recent[-1] <= time.monotonic() - 60):
                del self._recent[key]

    def open_count(self, key: str) -> int:
        """How many admitted connections ``key`` has open."""
        return self._open.get(key, 0)
