"""Running one hook across every plugin's handlers, in order, each under its deadline.

Order: by priority (lower first; ``hook_*`` methods have 0), then plugins in ``config/plugins``
order; within a plugin, handlers added by ``register()`` first, then its ``hook_*`` methods.
The first verdict other than CONT decides and ends the chain. A denial runs the ``deny`` hook
first, where OK turns the denial back into CONT.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, ParamSpec

import trio

from . import hooks
from .connection import Connection
from .hookargs import Denial
from .hookspec import Chain, HookSpec
from .plugin import Plugin
from .verdict import Result, Verdict, as_result

P = ParamSpec("P")


@dataclass(frozen=True, slots=True)
class Handler:
    plugin: Plugin
    hook: str
    fn: Callable[..., Coroutine[Any, Any, object]]
    timeout: float
    priority: int = 0

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


_CUSTOM = HookSpec(Plugin.hook_unrecognized_command)


class HookRunner:
    """Every handler of every hook, in order, and the rules for running a chain."""

    def __init__(self, plugins: Iterable[Plugin], default_timeout: float = 30.0) -> None:
        self.plugins = list(plugins)
        found: dict[str, list[tuple[int, int, Handler]]] = {}
        for plugin in self.plugins:
            timeout = plugin.config.timeout
            if timeout is None:
                timeout = default_timeout
            timeout = math.inf if timeout <= 0 else timeout
            handlers = [
                (r.hook, r.handler, r.priority)
                for r in plugin.__dict__.get("_registered_hooks", [])
            ]
            for name in hooks.BY_NAME:
                method = getattr(type(plugin), f"hook_{name}")
                if method is not getattr(Plugin, f"hook_{name}"):
                    handlers.append((name, getattr(plugin, f"hook_{name}"), 0))
            for name, fn, priority in handlers:
                entries = found.setdefault(name, [])
                entries.append(
                    (priority, len(entries), Handler(plugin, name, fn, timeout, priority))
                )
        # Lower priority first; equal priorities keep plugin order, then registration order.
        self._handlers = {
            name: [handler for _, _, handler in sorted(entries, key=lambda e: e[:2])]
            for name, entries in found.items()
        }

    def has(self, hook: HookSpec[Any]) -> bool:
        return hook.name in self._handlers

    def handlers(self, hook: HookSpec[Any] | str) -> list[Handler]:
        """The handlers of ``hook`` (a spec, or the name of a custom hook), in the order run."""
        return list(self._handlers.get(hook if isinstance(hook, str) else hook.name, ()))

    def describe(self) -> list[str]:
        """For ``tsmtp check --hooks``: each hook with handlers, then its handlers in order."""
        lines = []
        names = [*hooks.BY_NAME, *sorted(set(self._handlers) - set(hooks.BY_NAME))]
        for name in names:
            handlers = self._handlers.get(name)
            if not handlers:
                continue
            kind = "" if name in hooks.BY_NAME else " (custom)"
            lines.append(f"{name}{kind}:")
            for i, handler in enumerate(handlers, 1):
                timeout = "none" if handler.timeout == math.inf else f"{handler.timeout:g}s"
                lines.append(
                    f"  {i}. {handler.label} (priority {handler.priority}, timeout {timeout})"
                )
        return lines

    async def run(self, hook: HookSpec[P], *args: P.args, **kwargs: P.kwargs) -> Decision:
        """Run ``hook``'s chain with ``args`` (for connection hooks the first is the Connection)."""
        handlers = self._handlers.get(hook.name)
        if not handlers:
            return CONTINUE
        connection = args[0] if hook.takes_connection else None
        assert connection is None or isinstance(connection, Connection)
        return await self._chain(hook, handlers, connection, args)

    async def run_custom(
        self, name: str, connection: Connection, verb: str, argument: str
    ) -> Decision:
        """Run a plugin's own hook, as named by ``Verdict.HOOK(value=name)``."""
        handlers = self._handlers.get(name)
        if not handlers or name in hooks.BY_NAME:
            return CONTINUE
        return await self._chain(_CUSTOM, handlers, connection, (connection, verb, argument))

    async def _chain(
        self,
        hook: HookSpec[Any],
        handlers: list[Handler],
        connection: Connection | None,
        args: tuple[Any, ...],
    ) -> Decision:
        txn = connection.transaction if connection is not None else None
        skip = txn.skip_plugins if txn is not None else ()
        run_all = hook.chain is Chain.ALL
        for handler in handlers:
            if connection is not None and connection.closing and not hook.always_run:
                break
            if handler.plugin.name in skip:
                continue
            decision = await self._call(hook, handler, connection, args)
            if run_all or decision.verdict is Verdict.CONT:
                continue
            if decision.verdict.is_denial and not decision.failed and hook is not hooks.deny:
                assert connection is not None
                denial = Denial(
                    decision.verdict,
                    decision.result.message,
                    handler.plugin.name,
                    hook.name,
                    args[1:],
                )
                if (await self.run(hooks.deny, connection, denial)).verdict is Verdict.OK:
                    handler.plugin.loginfo(
                        f"{hook.name} denial overridden by the deny hook", connection
                    )
                    continue
            return decision
        return CONTINUE

    async def _call(
        self,
        hook: HookSpec[Any],
        handler: Handler,
        connection: Connection | None,
        args: tuple[object, ...],
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
        problem = (
            f"returned {outcome!r}, not a Verdict, Result or None"
            if result is None
            else _misfit(hook, result)
        )
        if problem is not None or result is None:
            plugin.logerror(f"hook {handler.hook} ({handler.label}) {problem}", connection)
            return Decision(Verdict.DENYSOFT("Internal error, try again later"), plugin.name, True)
        return Decision(result, plugin.name)


def _misfit(hook: HookSpec[Any], result: Result) -> str | None:
    """Why ``result`` is not something ``hook`` may return; None if it is."""
    if hook.chain is Chain.ALL:
        return None
    if result.verdict not in hook.verdicts:
        allowed = ", ".join(sorted(v.name for v in hook.verdicts))
        return f"returned {result.verdict.name}, which {hook.name} may not (only {allowed})"
    if (
        result.value is not None
        and hook.value is not None
        and not isinstance(result.value, hook.value)
    ):
        want = (
            " or ".join(t.__name__ for t in hook.value)
            if isinstance(hook.value, tuple)
            else hook.value.__name__
        )
        return f"returned a value of type {type(result.value).__name__}; {hook.name} needs {want}"
    return None
