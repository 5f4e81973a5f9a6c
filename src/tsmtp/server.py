"""Listening sockets, one task per connection, connection limits, plugins' serve tasks, reload
and graceful shutdown."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import ipaddress
import math
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import trio

from . import hooks
from . import replies as R
from .config import (
    ConfigError,
    Listener,
    ServerConfig,
    convert_settings,
    listener_override,
    load_server_config,
)
from .connection import Peer, ServerContext
from .lifecycle import PluginTaskError, PluginTasks
from .limits import ConnectionLimiter
from .loader import (
    PluginError,
    config_type_of,
    find_plugin_class,
    instantiate,
    load_plugins,
    plugin_search_path,
)
from .log import Level, log
from .occupancy import Occupancy, connection_capacity
from .plugin import Plugin, PluginConfig
from .runner import HookRunner
from .session import Runtime, Session
from .sockets import Sockets, open_sockets
from .stream import SocketStream
from .tls import server_context

_ACCEPT_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_ACCEPT_IGNORED = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ECONNRESET}


def _peer(address: object) -> Peer:
    if isinstance(address, tuple) and len(address) >= 2:
        return Peer(str(address[0]), int(address[1]))
    return Peer(str(address), 0)


@dataclass(frozen=True, slots=True)
class PluginSpec:
    """A plugin for :class:`Server`, configured in code.

    ``plugin`` is the Plugin subclass, or the name the server finds it by (bundled plugins such
    as ``"queue.maildir"``, the config's ``plugins.search_path``, ``tsmtp.plugins`` entry
    points). ``name`` is what it logs under (default: the name it was found by, or the class
    name in lower case). ``config`` is an instance of the plugin's config class or a mapping
    checked into it; None reads ``<name>.toml`` from the server's ``config_dir``, or takes the
    defaults without one.
    """

    plugin: type[Plugin] | str
    name: str | None = None
    config: PluginConfig | Mapping[str, object] | None = None


def _build_plugins(
    items: Sequence[Plugin | type[Plugin] | PluginSpec],
    context: ServerContext,
    config_dir: Path | None,
) -> list[Plugin]:
    built: list[Plugin] = []
    for item in items:
        if isinstance(item, Plugin):
            if not hasattr(item, "config"):
                raise PluginError(
                    f"plugin {type(item).__name__} was created but not configured: give its "
                    "class, or PluginSpec(class, config=...), and the server creates it"
                )
            item.server = context
            built.append(item)
            continue
        spec = item if isinstance(item, PluginSpec) else PluginSpec(item)
        if isinstance(spec.plugin, str):
            search = plugin_search_path(
                config_dir or Path.cwd(), context.config.plugins.search_path
            )
            cls = find_plugin_class(spec.plugin, search)
            name = spec.name or spec.plugin
        else:
            cls = spec.plugin
            name = spec.name or cls.__name__.lower()
        expected = config_type_of(cls)
        config = spec.config
        if isinstance(config, Mapping):
            config = convert_settings(config, expected, f"plugin {name!r}: config")
        elif config is None and config_dir is None:
            config = convert_settings({}, expected, f"plugin {name!r}: config")
        elif config is not None and not isinstance(config, expected):
            raise PluginError(
                f"plugin {name!r}: config is a {type(config).__name__}, "
                f"expected a {expected.__name__}"
            )
        built.append(
            instantiate(
                cls, name, config_dir=config_dir or Path.cwd(), server=context, config=config
            )
        )
    names = [plugin.name for plugin in built]
    for name in names:
        if names.count(name) > 1:
            raise PluginError(f"plugin {name!r} is given twice; give each a name of its own")
    return built


def _describe(address: tuple[str, int], settings: Listener, tls_ready: bool) -> str:
    host, port = address
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    tls: str = settings.tls
    if tls == "offered" and not tls_ready:
        tls += " (no [tls] certificate: plain text only)"
    auth: str = settings.auth
    if auth == "tls" and (settings.tls == "none" or not tls_ready):
        auth += " (so never: no TLS here)"
    yes_no = {True: "yes", False: "no"}
    return (
        f"listening on {where} (tls={tls}, auth={auth}, "
        f"require_auth={yes_no[settings.require_auth]}, "
        f"proxy_protocol={yes_no[settings.proxy_protocol]})"
    )


def read_config(config_dir: Path, listen: Sequence[str] = ()) -> ServerConfig:
    """``config_dir/smtp.toml``, with the listeners replaced by ``listen`` if given (see
    :meth:`Server.from_config_dir`)."""
    config = load_server_config(config_dir)
    if listen:
        source = str(config_dir / "smtp.toml")
        try:
            listeners = [listener_override(text, config.listen, source) for text in listen]
        except ValueError as exc:
            raise ConfigError(f"--listen: {exc}") from None
        config = msgspec.structs.replace(config, listen=listeners)
    return config


def _addresses(listeners: Sequence[Listener]) -> str:
    return ", ".join(listener.address for listener in listeners)


@dataclass(eq=False)
class _Generation:
    """One configuration's runtime and plugins, and the sessions that use them."""

    runtime: Runtime
    plugins: list[Plugin]
    tasks: PluginTasks
    sessions: set[Session] = dataclasses.field(default_factory=set)
    #: A reload replaced it: its serve tasks end when its last session does.
    retired: bool = False


def _close_all(listeners: Sockets) -> None:
    # Synchronous on purpose: this runs in cancelled scopes, where each await would raise.
    for lst, _ in listeners:
        if lst.fileno() >= 0:
            trio.lowlevel.notify_closing(lst)
            lst.close()


class Server:
    """An SMTP server: its config, its plugins and, while :meth:`serve` runs, its listeners.

    ``plugins`` run in the order given: Plugin subclasses (created with their default config,
    named after the class in lower case), :class:`PluginSpec` entries (a class or a name, with
    a name and a config), or plugins already made with :func:`tsmtp.testing.make_plugin`. Every
    plugin's ``server`` is this server's :attr:`context`. ``config_dir`` is where relative
    paths (TLS certificates, plugin files) are found; without it, the working directory.

    Embed it with ``addresses = await nursery.start(server.serve)``; port 0 picks a free port and
    ``addresses`` tells which. The plugins' :meth:`~tsmtp.Plugin.serve` tasks are ready before
    the first client is accepted. :meth:`shutdown` stops accepting, lets open transactions
    finish within ``shutdown_grace`` seconds, closes what is left, then cancels the serve tasks.
    :meth:`reload` switches new connections to a new configuration. A serve task that fails
    stops the server the same way, and :meth:`serve` then raises
    :class:`~tsmtp.lifecycle.PluginTaskError`.
    """

    def __init__(
        self,
        config: ServerConfig,
        plugins: Sequence[Plugin | type[Plugin] | PluginSpec] = (),
        *,
        context: ServerContext | None = None,
        config_dir: Path | None = None,
    ) -> None:
        if context is not None and context.config is not config:
            raise ValueError("context must be the ServerContext of this config")
        self.config = config
        #: What every plugin sees as ``self.server``: shared notes, the config, the resolver.
        #: A reload brings a new one, with the new plugins.
        self.context = context or ServerContext(config)
        self.plugins = _build_plugins(plugins, self.context, config_dir)
        self.runner = HookRunner(self.plugins, config.plugins.timeout)
        ssl_context = server_context(config.tls, config_dir or Path.cwd())
        for i, listener in enumerate(config.listen):
            if listener.tls in ("required", "implicit") and ssl_context is None:
                raise ConfigError(
                    f"listen[{i}] ({listener.address}): tls = {listener.tls!r} needs "
                    "[tls] cert and key"
                )
        self.runtime = Runtime(
            config,
            self.context,
            self.runner,
            ConnectionLimiter(config.limits),
            ssl_context,
            tuple(ipaddress.ip_network(n, strict=False) for n in config.proxy.trusted),
            Occupancy(),
        )
        self._capacity = config.limits.max_connections
        self.addresses: list[tuple[str, int]] = []
        self._sessions: set[Session] = set()
        self._accepting: trio.CancelScope | None = None
        self._all_closed = trio.Event()
        self._stopping = False
        self._current = _Generation(self.runtime, self.plugins, PluginTasks(self.plugins))
        #: Where :meth:`reload` reads the configuration again: the directory and ``--listen``.
        self._source: tuple[Path, tuple[str, ...]] | None = None
        self._tasks: trio.Nursery | None = None
        self._crash: PluginTaskError | None = None
        self._reloading = trio.Lock()

    @classmethod
    def from_config_dir(cls, config_dir: Path, *, listen: Sequence[str] = ()) -> Server:
        """Load ``smtp.toml`` and plugins from ``config_dir``.

        ``listen`` (``tsmtp run --listen``) replaces the listeners: each is ``HOST:PORT``
        followed by the settings that differ between the configured listeners, if any (see
        :func:`tsmtp.config.listener_override`).
        """
        return cls._from_config(config_dir, read_config(config_dir, listen), listen)

    @classmethod
    def _from_config(cls, config_dir: Path, config: ServerConfig, listen: Sequence[str]) -> Server:
        context = ServerContext(config)
        plugins = load_plugins(config_dir, context)
        server = cls(config, plugins, context=context, config_dir=config_dir)
        server._source = (config_dir, tuple(listen))
        return server

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def active_connections(self) -> int:
        return len(self._sessions)

    async def serve(
        self,
        *,
        sockets: Sequence[tuple[socket.socket, Listener]] | None = None,
        task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run init_master, start the plugins' serve tasks, listen, report the bound addresses,
        then serve until shut down.

        With ``sockets`` (listening sockets opened by a parent process), serve on those and run
        init_child instead: this is one node of several. Raises
        :class:`~tsmtp.lifecycle.PluginTaskError` if a serve task failed (before the addresses
        are reported if it failed to start; after the graceful stop it caused otherwise).
        """
        await self.runner.run(
            hooks.init_master if sockets is None else hooks.init_child, self.context
        )
        failure: BaseException | None = None
        async with trio.open_nursery() as tasks:
            self._tasks = tasks
            first = self._current
            await tasks.start(first.tasks.run, self._plugin_crashed)
            failure = not_started = first.tasks.failure
            if not_started is not None:
                log(
                    Level.CRIT,
                    f"{not_started}; the server does not start",
                    source=not_started.plugin,
                )
            else:
                try:
                    listeners = (
                        list(sockets)
                        if sockets is not None
                        else open_sockets(self.config.listen)[0]
                    )
                except OSError as exc:  # raised as it is, not in a group of this nursery
                    failure = exc
                else:
                    await self._serve_on(listeners, task_status)
            tasks.cancel_scope.cancel()
        self._tasks = None
        failure = failure or self._crash
        if failure is not None:
            raise failure
        log(Level.NOTICE, "stopped", source="server")

    async def _serve_on(
        self, listeners: Sockets, task_status: trio.TaskStatus[list[tuple[str, int]]]
    ) -> None:
        self._set_capacity()
        try:
            await self._serve(listeners, task_status)
        finally:
            _close_all(listeners)

    async def _serve(
        self,
        listeners: Sockets,
        task_status: trio.TaskStatus[list[tuple[str, int]]],
    ) -> None:
        names = [lst.getsockname() for lst, _ in listeners]
        self.addresses = [(str(name[0]), int(name[1])) for name in names]
        tls_ready = self.runtime.ssl_context is not None
        for address, (_, settings) in zip(self.addresses, listeners, strict=True):
            log(Level.NOTICE, _describe(address, settings, tls_ready), source="server")
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as accepting:
                self._accepting = accepting.cancel_scope
                if self._stopping:  # a serve task failed while the listeners were opened
                    accepting.cancel_scope.cancel()
                for lst, settings in listeners:
                    accepting.start_soon(self._accept_loop, lst, settings, connections)
                task_status.started(self.addresses)
            _close_all(listeners)
            for session in list(self._sessions):
                session.stop()
            with trio.move_on_after(self.config.shutdown_grace):
                if self._sessions:
                    await self._all_closed.wait()
            connections.cancel_scope.cancel()

    def _set_capacity(self) -> None:
        """How many connections this process can hold, and from how many on it is stressed."""
        limits = self.config.limits
        self._capacity = connection_capacity(limits.max_connections)
        if self._capacity < limits.max_connections:
            log(
                Level.WARN,
                f"max_connections = {limits.max_connections} needs more open files than this "
                f"process may have; holding at most {self._capacity} connections",
                source="server",
            )
        occupancy = self.runtime.occupancy
        occupancy.stress_at = max(1, math.ceil(self._capacity * limits.stress_threshold))
        occupancy.relax_at = max(1, occupancy.stress_at * 9 // 10)

    def shutdown(self) -> None:
        """Stop accepting; sessions end after their current transaction (see ``shutdown_grace``)."""
        self._stopping = True
        if self._accepting is not None:
            self._accepting.cancel()

    def _plugin_crashed(self, error: PluginTaskError) -> None:
        """A serve task failed after it was ready: no half-working plugin, so the server stops."""
        log(Level.CRIT, f"{error}; stopping the server", source=error.plugin)
        if self._crash is None:
            self._crash = error
        self.shutdown()

    async def reload(self, replacement: Server | None = None) -> bool:
        """Switch to a new configuration while serving; True if it was taken.

        The new one is read from the config directory (and ``--listen``) this server was made
        from by :meth:`from_config_dir`, or is ``replacement``'s config and plugins. If it
        cannot be loaded, or a new plugin's serve task fails to start, the error is logged and
        the old configuration stays. Otherwise new connections use the new configuration, open
        connections go on with the old one, and the old plugins' serve tasks are cancelled once
        those have ended. The listeners stay as they are: a changed ``listen`` takes a restart.
        """
        async with self._reloading:
            if self._tasks is None or self._stopping:
                state = "stopping" if self._stopping else "not serving"
                log(Level.WARN, f"reload ignored: the server is {state}", source="server")
                return False
            try:
                new = self._replacement() if replacement is None else replacement
                if new.config.listen != self.config.listen:
                    raise ConfigError(
                        f"the new configuration listens on {_addresses(new.config.listen)}; "
                        "listeners change only with a restart"
                    )
            except Exception as exc:
                log(
                    Level.ERROR,
                    f"reload failed: {exc}; still running the previous configuration",
                    source="server",
                )
                return False
            tasks = PluginTasks(new.plugins)
            await self._tasks.start(tasks.run, self._plugin_crashed)
            if tasks.failure is not None:
                log(
                    Level.CRIT,
                    f"{tasks.failure}; reload abandoned, still running the previous configuration",
                    source=tasks.failure.plugin,
                )
                return False
            if self._stopping:  # a shutdown began while the new plugins started
                tasks.stop()
                return False
            self._switch_to(new, tasks)
            return True

    def _replacement(self) -> Server:
        if self._source is None:
            raise ConfigError(
                "this server was not made by Server.from_config_dir: give reload() a new Server"
            )
        config_dir, listen = self._source
        config = read_config(config_dir, listen)
        if config.listen != self.config.listen:
            log(
                Level.WARN,
                f"reload: listen in {config_dir / 'smtp.toml'} is now "
                f"{_addresses(config.listen)}; listeners change only with a restart, so the "
                f"server goes on listening on {_addresses(self.config.listen)} as before",
                source="server",
            )
            config = msgspec.structs.replace(config, listen=self.config.listen)
        return Server._from_config(config_dir, config, listen)

    def _switch_to(self, new: Server, tasks: PluginTasks) -> None:
        old = self._current
        # The per-address counts go on across a reload; only new limits start them afresh.
        limiter = old.runtime.limiter
        if new.config.limits != self.config.limits:
            limiter = ConnectionLimiter(new.config.limits)
        runtime = dataclasses.replace(
            new.runtime, limiter=limiter, occupancy=self.runtime.occupancy
        )
        self._current = _Generation(runtime, new.plugins, tasks)
        self.config, self.context, self.plugins, self.runner = (
            new.config,
            new.context,
            new.plugins,
            new.runner,
        )
        self.runtime = runtime
        self._set_capacity()
        old.retired = True
        if not old.sessions:
            old.tasks.stop()
        names = ", ".join(plugin.name for plugin in new.plugins) or "(none)"
        log(
            Level.NOTICE,
            f"reloaded: plugins {names}; {len(old.sessions)} open connections finish with the "
            "previous configuration",
            source="server",
        )

    async def _accept_loop(
        self, listening: socket.socket, settings: Listener, nursery: trio.Nursery
    ) -> None:
        tcp = listening.family in (socket.AF_INET, socket.AF_INET6)
        while True:
            try:
                sock, _ = listening.accept()
            except BlockingIOError:
                await trio.lowlevel.wait_readable(listening)
                continue
            except OSError as exc:
                if exc.errno in _ACCEPT_ERRORS:
                    log(Level.ERROR, f"accept failed ({exc.strerror}); pausing", source="server")
                    await trio.sleep(0.1)
                elif exc.errno not in _ACCEPT_IGNORED:
                    raise
                continue
            if tcp:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            nursery.start_soon(self._handle, SocketStream(sock), settings)
            await trio.lowlevel.checkpoint()  # a flood of connections must not starve sessions

    async def _handle(self, stream: SocketStream, settings: Listener) -> None:
        try:
            remote = _peer(stream.socket.getpeername())
        except OSError:  # already gone
            await stream.aclose()
            return
        occupancy = self.runtime.occupancy
        # Full: the connection idle longest outside a transaction makes room for this one, so
        # a crowd that connects and then says nothing cannot lock everyone else out.
        if len(self._sessions) >= self._capacity and not occupancy.evict_oldest_idle():
            log(
                Level.NOTICE,
                f"refused {remote}: {len(self._sessions)} connections open, none idle",
                source="server",
            )
            with trio.move_on_after(5), contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(R.TOO_MANY_CONNECTIONS.to_bytes())
            await trio.aclose_forcefully(stream)
            return
        local = _peer(stream.socket.getsockname())
        generation = self._current
        session = Session(stream, generation.runtime, remote, local, settings)
        generation.sessions.add(session)
        self._sessions.add(session)
        occupancy.opened()
        if self._stopping:
            session.stop()
        try:
            await session.run()
        except Exception as exc:
            log(Level.CRIT, f"session failed: {exc!r}", source="server", context=session.conn)
        finally:
            self._sessions.discard(session)
            generation.sessions.discard(session)
            if generation.retired and not generation.sessions:
                generation.tasks.stop()
            occupancy.closed()
            if self._stopping and not self._sessions:
                self._all_closed.set()
