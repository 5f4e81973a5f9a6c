"""What the outbound hooks (get_mx, send_email, deferred, bounce, delivered) receive."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..notes import Notes
from ..protocol import Address


@dataclass(slots=True)
class OutboundMail:
    """A queued message on its way out to one destination domain."""

    id: str
    sender: Address
    recipients: list[Address]
    domain: str
    attempts: int = 0
    notes: Notes = field(default_factory=Notes)


@dataclass(frozen=True, slots=True)
class MailExchanger:
    """A host to deliver to, as ``get_mx`` returns it."""

    exchange: str
    priority: int = 0
    port: int = 25
    bind: str | None = None


@dataclass(frozen=True, slots=True)
class Deferral:
    """A temporary failure: ``delay`` seconds until the next attempt, and why."""

    delay: float
    error: str
    recipients: tuple[Address, ...] = ()


@dataclass(frozen=True, slots=True)
class Bounce:
    """A permanent failure for some or all recipients."""

    error: str
    bounced: tuple[Address, ...] = ()
    deferred: tuple[Address, ...] = ()


@dataclass(frozen=True, slots=True)
class Delivery:
    """A successful hand-off to a remote server."""

    host: str
    ip: str
    port: int
    response: str
    delay: float
    recipients: tuple[Address, ...] = ()
    secured: bool = False
    authenticated: bool = False
