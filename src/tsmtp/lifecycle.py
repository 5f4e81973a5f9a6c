"""The ``serve`` tasks of a set of plugins: started in order, watched, cancelled together."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import trio
from typing_extensions import override

from .log import Level, log
from .plugin import Plugin


class PluginTaskError(Exception):
    """A plugin's ``serve`` task failed; the server stops rather than run half a plugin.

    ``plugin`` is the plugin's name, ``started`` whether the task had reported itself ready.
    The plugin's exception is the ``__cause__``.
    """

    def __init__(self, plugin: str, problem: str, *, started: bool) -> None:
        super().__init__(f"plugin {plugin!r}: serve task {problem}")
        self.plugin = plugin
        self.started = started


def has_serve_task(plugin: Plugin) -> bool:
    """Whether ``plugin`` overrides :meth:`Plugin.serve` (the others get no task)."""
    return type(plugin).serve is not Plugin.serve


class _Readiness(trio.TaskStatus[None]):
    """Passes a plugin's ``started()`` on, and remembers that it came."""

    def __init__(self, outer: trio.TaskStatus[None]) -> None:
        self._outer = outer
        self.ready = False

    @override
    def started(self, value: None = None) -> None:
        if self.ready:
            raise RuntimeError("called 'started' twice on the same task status")
        self.ready = True
        self._outer.started()


class PluginTasks:
    """The serve tasks of ``plugins`` (those that have one).

    ``await nursery.start(tasks.run, on_crash)`` starts them one after the other, in the order
    of the plugins, and returns once each has called ``task_status.started()``, or once one
    has failed before that: then :attr:`failure` says which, and the ones already started are
    cancelled. A task that fails later is reported to ``on_crash``. :meth:`stop` cancels them.
    """

    def __init__(self, plugins: Sequence[Plugin]) -> None:
        self.plugins = [plugin for plugin in plugins if has_serve_task(plugin)]
        #: The task that failed to start, if one did.
        self.failure: PluginTaskError | None = None
        self._scope = trio.CancelScope()

    def stop(self) -> None:
        """Cancel the tasks (at once if they are still starting)."""
        self._scope.cancel()

    async def run(
        self,
        on_crash: Callable[[PluginTaskError], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        ready = False
        with self._scope:
            async with trio.open_nursery() as nursery:
                for plugin in self.plugins:
                    await nursery.start(self._one, plugin, on_crash)
                    if self.failure is not None:
                        nursery.cancel_scope.cancel()
                        break
                ready = True
                task_status.started()
        if not ready:  # stopped while starting
            task_status.started()

    async def _one(
        self,
        plugin: Plugin,
        on_crash: Callable[[PluginTaskError], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        readiness = _Readiness(task_status)
        log(Level.DEBUG, "starting its serve task", source=plugin.log_source)
        try:
            await plugin.serve(task_status=readiness)
        except Exception as exc:
            when = "after" if readiness.ready else "before"
            error = PluginTaskError(
                plugin.name, f"failed {when} it was ready: {exc!r}", started=readiness.ready
            )
            error.__cause__ = exc
        else:
            if readiness.ready:
                log(Level.DEBUG, "serve task ended", source=plugin.log_source)
                return
            error = PluginTaskError(
                plugin.name, "returned without calling task_status.started()", started=False
            )
        if readiness.ready:
            on_crash(error)
        else:
            self.failure = error
            task_status.started()
