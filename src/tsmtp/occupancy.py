"""How full the server is: stress (Postfix-style load adaptation) and the idle sessions, oldest
first, one of which makes room when the server is full."""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol


class Idler(Protocol):
    """A session as the occupancy sees it."""

    def under_stress(self) -> None:
        """The server became stressed: shorten any wait for a command now."""

    def evict(self) -> None:
        """Close this idle connection to make room for a new one."""


class Occupancy:
    """Shared by the server (which counts connections) and its sessions (which report idling).

    ``stressed`` is true from ``stress_at`` open connections until the count falls below
    ``relax_at``; stressed sessions get short command timeouts and one error ends them.
    """

    __slots__ = ("_idle", "open", "relax_at", "stress_at", "stressed")

    def __init__(self, stress_at: int | None = None) -> None:
        self.open = 0
        self.stress_at = stress_at
        # Some room between entering and leaving stress, so that a count hovering at the
        # threshold does not re-arm every idle session's deadline on each connection.
        self.relax_at = None if stress_at is None else max(1, stress_at * 9 // 10)
        self.stressed = False
        self._idle: OrderedDict[Idler, None] = OrderedDict()

    def opened(self) -> None:
        self.open += 1
        if not self.stressed and self.stress_at is not None and self.open >= self.stress_at:
            self.stressed = True
            for session in list(self._idle):
                session.under_stress()

    def closed(self) -> None:
        self.open -= 1
        if self.stressed and self.relax_at is not None and self.open < self.relax_at:
            self.stressed = False

    def idle_started(self, session: Idler) -> None:
        """``session`` waits for a command outside a transaction (from now: it is the newest)."""
        self._idle[session] = None

    def idle_ended(self, session: Idler) -> None:
        self._idle.pop(session, None)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def evict_oldest_idle(self) -> bool:
        """Close the session idle longest; False if no session is idle."""
        if not self._idle:
            return False
        session, _ = self._idle.popitem(last=False)
        session.evict()
        return True


#: File descriptors kept for everything that is not a client connection (listeners, logs,
#: queue files, DNS and plugin sockets).
FD_RESERVE = 256


def connection_capacity(wanted: int) -> int:
    """Raise this process's open-file limit as far as ``wanted`` connections need (up to the
    hard limit) and return how many connections fit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - FD_RESERVE))
