"""The shape of one hook: :class:`HookSpec`, typed by the parameters its handlers take."""

from __future__ import annotations

import enum
import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec

from typing_extensions import override

from .protocol import Reply
from .verdict import Outcome, Verdict

if TYPE_CHECKING:
    from .plugin import Plugin

P = ParamSpec("P")


class Chain(enum.Enum):
    """How a hook's handlers are run."""

    FIRST = "first"
    """In order until one gives a verdict other than CONT; that verdict decides."""
    ALL = "all"
    """Every handler runs; verdicts are ignored (observers)."""


#: What a hook that takes part in the SMTP conversation may answer.
CONVERSATION_VERDICTS = frozenset(
    {
        Verdict.CONT,
        Verdict.OK,
        Verdict.DENY,
        Verdict.DENYSOFT,
        Verdict.DENYDISCONNECT,
        Verdict.DENYSOFTDISCONNECT,
        Verdict.DISCONNECT,
    }
)
DEFAULT_DENY = Reply.of(550, "Denied", "5.7.1")
DEFAULT_DENYSOFT = Reply.of(450, "Denied, try again later", "4.7.1")

#: What a server or outbound hook may answer.
SERVER_VERDICTS = frozenset({Verdict.CONT, Verdict.OK, Verdict.DENY, Verdict.DENYSOFT})


class HookSpec(Generic[P]):
    """One hook: its name, the parameters of its handlers (``P``), how its chain runs, which
    verdicts it may return, what type a returned ``value`` must have and its default refusals.

    The parameters come from the matching ``hook_<name>`` method of :class:`~tsmtp.Plugin`, so
    the method and the spec cannot disagree. ``spec.register(plugin, handler)`` adds a handler (mypy
    checks it against ``P``); ``tsmtp.testing.call_hook`` takes a spec too.
    """

    __slots__ = (
        "always_run",
        "chain",
        "deny",
        "denysoft",
        "doc",
        "name",
        "parameters",
        "takes_connection",
        "value",
        "verdicts",
    )

    def __init__(
        self,
        method: Callable[Concatenate[Any, P], Awaitable[Outcome]],
        chain: Chain = Chain.FIRST,
        *,
        verdicts: frozenset[Verdict] | None = None,
        value: type | tuple[type, ...] | None = None,
        always_run: bool = False,
        refusals: tuple[Reply, Reply] = (DEFAULT_DENY, DEFAULT_DENYSOFT),
    ) -> None:
        name = method.__name__
        if not name.startswith("hook_"):
            raise ValueError(f"{name} is not a hook_* method")
        self.name = name.removeprefix("hook_")
        signature = inspect.signature(method)
        self.parameters = tuple(signature.parameters.values())[1:]
        hints = typing.get_type_hints(method)
        first = hints.get(self.parameters[0].name) if self.parameters else None
        self.takes_connection = getattr(first, "__name__", "") == "Connection"
        self.chain = chain
        self.verdicts = verdicts or (
            CONVERSATION_VERDICTS if self.takes_connection else SERVER_VERDICTS
        )
        self.value = value
        self.always_run = always_run
        #: The replies of a DENY and a DENYSOFT that came without a text of their own.
        self.deny, self.denysoft = refusals
        self.doc = inspect.getdoc(method) or ""

    def register(
        self,
        plugin: Plugin,
        handler: Callable[P, Awaitable[Outcome]],
        *,
        priority: int = 0,
    ) -> None:
        """Add ``handler`` to ``plugin`` for this hook; call it in the plugin's ``register()``::

            hooks.rcpt.register(self, self.check_recipient, priority=-10)

        Handlers run by ``priority`` (lower first, -100 to 100, as in Haraka), then in plugin
        order, then in the order they were added; ``hook_*`` methods have priority 0 and run
        after the plugin's registered handlers of the same priority. mypy checks ``handler``
        against this hook's parameters.
        """
        plugin.add_handler(self.name, handler, priority)

    @property
    def signature(self) -> str:
        """The handler's parameters as text, for error messages."""
        return f"({', '.join(str(p).replace(chr(39), '') for p in self.parameters)})"

    @override
    def __repr__(self) -> str:
        return f"<hook {self.name}>"
