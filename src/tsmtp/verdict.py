"""What a hook decides: a :class:`Verdict`, optionally with a reply text or a value."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias


class Verdict(enum.Enum):
    """The decision a hook returns.

    Call a member to attach a reply: ``Verdict.DENY("no such user")``, or several lines
    ``Verdict.DENY(["line one", "line two"])``; ``value=`` carries data (the name for
    ``lookup_rdns``, the hook name for ``HOOK``, seconds for ``DELAY``). ``code=`` overrides
    the reply code and the text may start with an enhanced status code (``"5.1.1 unknown"``).
    """

    CONT = "cont"
    """No opinion: let the next handler decide."""
    OK = "ok"
    """Accept; no further handler runs for this hook."""
    DENY = "deny"
    """Refuse with a permanent (5xx) reply."""
    DENYSOFT = "denysoft"
    """Refuse with a temporary (4xx) reply."""
    DENYDISCONNECT = "denydisconnect"
    """Refuse with a 5xx reply, then close the connection."""
    DENYSOFTDISCONNECT = "denysoftdisconnect"
    """Refuse with a 4xx reply, then close the connection."""
    DISCONNECT = "disconnect"
    """Close the connection without a reply."""
    HOOK = "hook"
    """``unrecognized_command`` only: run the hook named by ``value``."""
    DELAY = "delay"
    """Outbound ``send_email`` only: try again after ``value`` seconds."""

    def __call__(
        self,
        message: str | Sequence[str] | None = None,
        *,
        value: object = None,
        code: int | None = None,
    ) -> Result:
        lines = (
            (message,) if isinstance(message, str) else None if message is None else tuple(message)
        )
        return Result(self, lines, value, code)

    @property
    def is_denial(self) -> bool:
        return self in _DENIALS

    @property
    def disconnects(self) -> bool:
        return self in _DISCONNECTS

    @property
    def is_temporary(self) -> bool:
        return self in (Verdict.DENYSOFT, Verdict.DENYSOFTDISCONNECT)


_DENIALS = frozenset(
    {Verdict.DENY, Verdict.DENYSOFT, Verdict.DENYDISCONNECT, Verdict.DENYSOFTDISCONNECT}
)
_DISCONNECTS = frozenset({Verdict.DENYDISCONNECT, Verdict.DENYSOFTDISCONNECT, Verdict.DISCONNECT})


@dataclass(frozen=True, slots=True)
class Result:
    """A verdict with its reply lines (``None`` for the default reply), value and code."""

    verdict: Verdict
    message: tuple[str, ...] | None = None
    value: object = None
    code: int | None = None

    def __post_init__(self) -> None:
        if self.code is not None and not 200 <= self.code <= 599:
            raise ValueError(f"reply code must be between 200 and 599, not {self.code}")


#: What a hook may return: ``None`` means CONT.
Outcome: TypeAlias = Verdict | Result | None

CONT = Verdict.CONT
OK = Verdict.OK
DENY = Verdict.DENY
DENYSOFT = Verdict.DENYSOFT
DENYDISCONNECT = Verdict.DENYDISCONNECT
DENYSOFTDISCONNECT = Verdict.DENYSOFTDISCONNECT
DISCONNECT = Verdict.DISCONNECT
HOOK = Verdict.HOOK
DELAY = Verdict.DELAY


def as_result(outcome: object) -> Result | None:
    """Normalise a hook's return value; None if it is not a valid outcome."""
    if outcome is None:
        return _CONT_RESULT
    if isinstance(outcome, Verdict):
        return _BARE[outcome]
    if isinstance(outcome, Result):
        return outcome
    return None


_CONT_RESULT = Result(Verdict.CONT)
_BARE = {v: Result(v) for v in Verdict}
