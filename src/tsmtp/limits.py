"""Per-address connection accounting: concurrent connections and connection rate."""

from __future__ import annotations

import time
from collections import defaultdict, deque

from . import replies as R
from .config import Limits
from .protocol import Reply


class ConnectionLimiter:
    """Admit or refuse a new connection from an address; ``release`` when it ends."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._open: defaultdict[str, int] = defaultdict(int)
        self._recent: defaultdict[str, deque[float]] = defaultdict(deque)

    def admit(self, ip: str) -> Reply | None:
        """None if the address may connect (and it is counted), else the reply that refuses it."""
        limits = self.limits
        if self._open[ip] >= limits.max_connections_per_ip:
            return R.TOO_MANY_FROM_IP
        rate = limits.max_connection_rate_per_ip
        if rate:
            now = time.monotonic()
            recent = self._recent[ip]
            while recent and recent[0] <= now - 60:
                recent.popleft()
            if len(recent) >= rate:
                return R.RATE_LIMITED
            recent.append(now)
        self._open[ip] += 1
        return None

    def release(self, ip: str) -> None:
        count = self._open[ip] - 1
        if count > 0:
            self._open[ip] = count
        else:
            del self._open[ip]
            recent = self._recent.get(ip)
            if recent is not None and (not recent or recent[-1] <= time.monotonic() - 60):
                del self._recent[ip]
