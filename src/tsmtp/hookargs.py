"""What some hooks are told besides the connection: a denial, AUTH credentials."""

from __future__ import annotations

from dataclasses import dataclass, field

from .verdict import Verdict


@dataclass(frozen=True, slots=True)
class Denial:
    """What the ``deny`` hook is told: which hook of which plugin refused, how and with what."""

    verdict: Verdict
    message: tuple[str, ...] | None
    plugin: str
    hook: str
    params: tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a client sent with AUTH: the mechanism, the user name and the password.

    ``authzid`` is the identity PLAIN lets a client ask to act as (usually empty); an auth hook
    allows it by answering ``Verdict.OK(value=authzid)``.
    """

    mechanism: str
    username: str
    password: str = field(repr=False)
    authzid: str = ""
