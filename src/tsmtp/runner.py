"""Running one hook across every plugin's handlers, in order, each under its deadline.

Order: plugins in ``config/plugins`` order; within a plugin, handlers added by ``register()``
first, then its ``hook_*`` methods. The first verdict other than CONT decides and ends the
chain. A denial runs the ``deny`` hook first, where OK turns the denial back into CONT.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

import trio

from .connection import Connection
from .hooks import ALWAYS_RUN, RUN_ALL, SERVER_HOOKS, Denial
from .plugin import HOOK_NAMES, Plugin
from .verdict import Result, Verdict, as_result


@dataclass(frozen=True, slots=True)
class Handler:
    plugin: Plugin
    hook: str
    fn: Callable[..., Coroutine[Any, Any, object]]
    timeout: float

    @property
    def label(self) -> str:
        return f"{self.plugin.log_source}:{getattr(self.fn, '__name__', 'handler')}"


@dataclass(frozen=True, slots=True)
class Decision:
    """How a hook chain ended: the deciding result and who gave it."""

    result: Result
    plugin: str | None = None
    failed: bool = False

    @property
    def verdict(self) -> Verdict:
        return self.result.verdict


CONTINUE = Decision(Result(Verdict.CONT))


def _reraise_cancellation(
    exc: BaseException, plugin: Plugin, handler: Handler, connection: Connection | None
) -> None:
    """Raise the Trio cancellation inside ``exc``, if any, logging what else came with it."""
    if isinstance(exc, trio.Cancelled):
        raise exc
    if isinstance(exc, BaseExceptionGroup):
        cancelled, rest = exc.split(trio.Cancelled)
        if cancelled is not None:
            if rest is not None:
                plugin.logcrit(
                    f"hook {handler.hook} ({handler.label}) raised {rest!r} while cancelled",
                    connection,
                )
            raise cancelled


#: Verdicts that only some hooks may return.
_ONLY_FROM = {
    Verdict.HOOK: frozenset({"unrecognized_command"}),
    Verdict.DELAY: frozenset({"send_email"}),
}


class HookRunner:
    """Every handler of every hook, in order, and the rules for running a chain."""

    def __init__(self, plugins: Iterable[Plugin], default_timeout: float = 30.0) -> None:
        self.plugins = list(plugins)
        self._handlers: dict[str, list[Handler]] = {}
        for plugin in self.plugins:
            timeout = plugin.config.timeout
            if timeout is None:
                timeout = default_timeout
            timeout = math.inf if timeout <= 0 else timeout
            for hook, fn in plugin.__dict__.get("_registered_hooks", []):
                self._handlers.setdefault(hook, []).append(Handler(plugin, hook, fn, timeout))
            for hook in sorted(HOOK_NAMES):
                method = getattr(type(plugin), f"hook_{hook}")
                if method is not getattr(Plugin, f"hook_{hook}"):
                    bound = getattr(plugin, f"hook_{hook}")
                    self._handlers.setdefault(hook, []).append(
                        Handler(plugin, hook, bound, timeout)
                    )

    def has(self, hook: str) -> bool:
        return hook in self._handlers

    def handlers(self, hook: str) -> list[Handler]:
        return list(self._handlers.get(hook, ()))

    async def run(self, hook: str, connection: Connection | None, *args: object) -> Decision:
        """Run ``hook``'s chain for ``connection`` (None for server and outbound hooks)."""
        handlers = self._handlers.get(hook)
        if not handlers:
            return CONTINUE
        call_args = args if hook in SERVER_HOOKS else (connection, *args)
        skip = connection.transaction.skip_plugins if connection and connection.transaction else ()
        for handler in handlers:
            if connection is not None and connection.closing and hook not in ALWAYS_RUN:
                break
            if handler.plugin.name in skip:
                continue
            decision = await self._call(handler, connection, call_args)
            if hook in RUN_ALL or decision.verdict is Verdict.CONT:
                continue
            if decision.verdict.is_denial and not decision.failed and hook != "deny":
                denial = Denial(
                    decision.verdict, decision.result.message, handler.plugin.name, hook, args
                )
                if (
                    connection is not None
                    and (await self.run("deny", connection, denial)).verdict is Verdict.OK
                ):
                    handler.plugin.loginfo(f"{hook} denial overridden by the deny hook", connection)
                    continue
            return decision
        return CONTINUE

    async def _call(
        self, handler: Handler, connection: Connection | None, args: tuple[object, ...]
    ) -> Decision:
        plugin = handler.plugin
        try:
            with trio.CancelScope(deadline=trio.current_time() + handler.timeout) as scope:
                outcome = await handler.fn(*args)
        except BaseException as exc:
            # Whatever a plugin raises is its own failure, SystemExit and KeyboardInterrupt
            # included; only a cancellation that is not ours (client gone, server stopping)
            # goes on up to the scope that asked for it.
            _reraise_cancellation(exc, plugin, handler, connection)
            plugin.logcrit(f"hook {handler.hook} ({handler.label}) raised {exc!r}", connection)
            return Decision(Verdict.DENYSOFT("Internal error, try again later"), plugin.name, True)
        if scope.cancelled_caught:
            plugin.logcrit(
                f"hook {handler.hook} ({handler.label}) timed out after {handler.timeout:g}s",
                connection,
            )
            return Decision(Verdict.DENYSOFT("Plugin timeout, try again later"), plugin.name, True)
        result = as_result(outcome)
        if result is None:
            plugin.logerror(
                f"hook {handler.hook} ({handler.label}) returned {outcome!r}, "
                "not a Verdict, Result or None",
                connection,
            )
            return Decision(Verdict.DENYSOFT("Internal error, try again later"), plugin.name, True)
        allowed = _ONLY_FROM.get(result.verdict)
        if allowed is not None and handler.hook not in allowed and handler.hook in HOOK_NAMES:
            plugin.logerror(
                f"hook {handler.hook} returned {result.verdict.name}, "
                f"which only {' or '.join(sorted(allowed))} may",
                connection,
            )
            return Decision(Verdict.DENYSOFT("Internal error, try again later"), plugin.name, True)
        return Decision(result, plugin.name)
