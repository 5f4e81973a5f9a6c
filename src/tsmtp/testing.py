"""Tools for testing plugins: a real server on a free port, a small client, and hook calls
without a socket.

    async with running_server([MyPlugin]) as srv:
        client = await SMTPClient.connect(srv.host, srv.port)
        assert (await client.command("EHLO me")).code == 250

    plugin = make_plugin(MyPlugin, config=MyPlugin.Config(...))
    result = await call_hook(plugin.hook_rcpt, make_connection(), address, RcptParams())
"""

from __future__ import annotations

import email.policy
import inspect
import ssl
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, overload

import msgspec
import trio
from typing_extensions import override

from . import hooks
from .config import Listener, ServerConfig
from .connection import Connection, Peer, ServerContext
from .hookspec import HookSpec
from .loader import instantiate
from .plugin import Plugin, PluginConfig
from .protocol import Address, MailParams, RcptParams, parse_mailbox
from .results import Results
from .runner import HookRunner
from .server import Server
from .transaction import Recipient, Transaction
from .verdict import Outcome, Result, Verdict

__all__ = [
    "AcceptAll",
    "CaptureQueue",
    "CapturedMessage",
    "ClientReply",
    "RunningServer",
    "SMTPClient",
    "call_hook",
    "make_connection",
    "make_plugin",
    "make_transaction",
    "running_server",
    "test_config",
]


def test_config(**changes: object) -> ServerConfig:
    """A ServerConfig listening on 127.0.0.1 port 0, with ``changes`` applied."""
    base = ServerConfig(hostname="tsmtp.test", listen=[Listener(address="127.0.0.1:0")])
    return msgspec.structs.replace(base, **changes)


test_config.__test__ = False  # type: ignore[attr-defined]


P = TypeVar("P", bound=Plugin)
HookParams = ParamSpec("HookParams")


def make_plugin(
    cls: type[P],
    *,
    name: str | None = None,
    config: PluginConfig | None = None,
    config_dir: Path | None = None,
    server: ServerContext | None = None,
) -> P:
    """Create a plugin the way the loader does (checks, config, ``register()``).

    Without ``config``, the plugin's settings are read from ``config_dir/<name>.toml`` (defaults
    when the file does not exist).
    """
    context = server or ServerContext(test_config())
    plugin = instantiate(
        cls,
        name or cls.__name__.lower(),
        config_dir=config_dir or Path.cwd(),
        server=context,
        config=config,
    )
    assert isinstance(plugin, cls)
    return plugin


def make_connection(
    remote_ip: str = "192.0.2.1",
    remote_port: int = 40000,
    *,
    server: ServerContext | None = None,
) -> Connection:
    """A Connection as a hook sees it, with no socket behind it."""
    context = server or ServerContext(test_config())
    return Connection(context, Peer(remote_ip, remote_port), Peer("127.0.0.1", 25))


def make_transaction(
    connection: Connection,
    sender: Address | str | None = None,
    message: bytes | str = b"",
    params: MailParams | None = None,
    *,
    recipients: Iterable[Address | str] = (),
) -> Transaction:
    """Start a transaction on ``connection`` with ``message`` (the whole message, header and
    body, as a client sends it; a ``str`` is encoded as UTF-8) and ``recipients`` accepted.

    Addresses may be given as ``"user@example.org"``; ``sender`` defaults to ``<>``.
    """
    txn = Transaction(
        f"{connection.uuid}.{connection.transaction_count + 1}",
        _address(sender) if sender is not None else Address.null(),
        params or MailParams(),
    )
    connection._transaction_count += 1
    txn.recipients.extend(Recipient(_address(r), RcptParams()) for r in recipients)
    txn.body.write(message.encode() if isinstance(message, str) else message)
    connection._transaction = txn
    return txn


def _address(address: Address | str) -> Address:
    if isinstance(address, Address):
        return address
    parsed = parse_mailbox(address)
    if parsed is None:
        raise ValueError(f"not a mailbox: {address!r}")
    return parsed


class AcceptAll(Plugin):
    """Accepts every recipient, so that a test conversation gets as far as DATA."""

    @override
    async def hook_rcpt(
        self, connection: Connection, recipient: Address, params: RcptParams, /
    ) -> Outcome:
        return Verdict.OK


@dataclass(frozen=True)
class CapturedMessage:
    """A message :class:`CaptureQueue` took: its envelope, the octets a queue would store and
    the transaction's results (the live object, so what later hooks add shows too)."""

    uuid: str
    sender: Address
    recipients: list[Recipient]
    data: bytes
    results: Results
    #: True when it came through ``queue_outbound`` (a relaying client).
    outbound: bool = False

    def parsed(self) -> EmailMessage:
        """The stored message parsed with ``email.policy.default``."""
        return BytesParser(policy=email.policy.default).parsebytes(self.data)


class CaptureQueue(Plugin):
    """A queue plugin for tests: keeps every message, as it would be stored, in
    :attr:`messages`, and answers OK (through ``queue`` and ``queue_outbound`` alike).

    Give ``running_server`` the class and find the instance with ``srv.plugin(CaptureQueue)``,
    or make it with ``make_plugin(CaptureQueue)`` and give that.
    """

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[CapturedMessage] = []

    @override
    async def hook_queue(self, connection: Connection, transaction: Transaction, /) -> Outcome:
        return await self._capture(transaction, outbound=False)

    @override
    async def hook_queue_outbound(
        self, connection: Connection, transaction: Transaction, /
    ) -> Outcome:
        return await self._capture(transaction, outbound=True)

    async def _capture(self, txn: Transaction, *, outbound: bool) -> Outcome:
        await txn.apply_body_filters()  # the core did already; a direct call_hook did not
        data = b"".join(txn.message_chunks())
        assert len(data) == txn.message_size(), "message_size() disagrees with message_chunks()"
        self.messages.append(
            CapturedMessage(txn.uuid, txn.sender, list(txn.recipients), data, txn.results, outbound)
        )
        return Verdict.OK


@overload
async def call_hook(
    hook: Callable[HookParams, Awaitable[Outcome]],
    /,
    *args: HookParams.args,
    **kw: HookParams.kwargs,
) -> Result: ...
@overload
async def call_hook(
    plugin: Plugin,
    hook: HookSpec[HookParams],
    /,
    *args: HookParams.args,
    **kw: HookParams.kwargs,
) -> Result: ...
async def call_hook(target: object, /, *args: Any, **kw: Any) -> Result:
    """Run one hook of one plugin as the server would (deadline; a failure becomes DENYSOFT).

    Give the bound hook method, or the plugin and the hook from :mod:`tsmtp.hooks` (which also
    runs handlers added with ``register_hook``); mypy checks the arguments either way::

        result = await call_hook(plugin.hook_rcpt, connection, recipient, RcptParams())
        result = await call_hook(plugin, hooks.rcpt, connection, recipient, RcptParams())

    The plugin's whole chain for that hook runs. Arguments that do not fit the hook raise
    ``TypeError`` at once instead of becoming a verdict.
    """
    if kw:
        raise TypeError("call_hook: hook arguments are positional")
    if isinstance(target, Plugin):
        if not args or not isinstance(args[0], HookSpec):
            raise TypeError("call_hook(plugin, hook, *args): hook is a spec such as hooks.rcpt")
        plugin, spec, args = target, args[0], args[1:]
    else:
        owner = getattr(target, "__self__", None)
        name = str(getattr(target, "__name__", ""))
        if not isinstance(owner, Plugin) or name.removeprefix("hook_") not in hooks.BY_NAME:
            raise TypeError(
                f"call_hook: {target!r} is neither a plugin's hook_* method nor a plugin"
            )
        plugin, spec = owner, hooks.BY_NAME[name.removeprefix("hook_")]
    _check_hook_call(spec, args)
    runner = HookRunner([plugin], plugin.server.config.plugins.timeout)
    return (await runner.run(spec, *args)).result


def _check_hook_call(spec: HookSpec[Any], args: tuple[object, ...]) -> None:
    """Raise if ``args`` do not fit the parameters of ``spec``."""
    method = getattr(Plugin, f"hook_{spec.name}")
    signature = inspect.signature(method)
    expected = f"{spec.name}{spec.signature}"
    try:
        bound = signature.bind(None, *args)
    except TypeError as exc:
        raise TypeError(f"call_hook: wrong arguments for {expected}: {exc}") from None
    hints = typing.get_type_hints(method)
    for name, value in list(bound.arguments.items())[1:]:
        wanted = typing.get_origin(hints.get(name)) or hints.get(name)
        if isinstance(wanted, type) and not isinstance(value, wanted):
            raise TypeError(
                f"call_hook: {name} must be {wanted.__name__}, not {type(value).__name__} "
                f"(the hook is {expected})"
            )


@dataclass(frozen=True)
class RunningServer:
    """A server started by :func:`running_server`; ``connect()`` opens clients it closes later."""

    server: Server
    host: str
    port: int
    clients: list[SMTPClient] = field(default_factory=list)

    async def connect(self, *, port: int | None = None, read_greeting: bool = True) -> SMTPClient:
        client = await SMTPClient.connect(self.host, port or self.port, read_greeting=read_greeting)
        self.clients.append(client)
        return client

    def plugin(self, cls: type[P]) -> P:
        """This server's plugin of class ``cls`` (the first, if several)."""
        for plugin in self.server.plugins:
            if isinstance(plugin, cls):
                return plugin
        raise LookupError(f"no {cls.__name__} plugin in this server")


@asynccontextmanager
async def running_server(
    plugins: Sequence[Plugin | type[Plugin]],
    *,
    config: ServerConfig | None = None,
    config_dir: Path | None = None,
) -> AsyncIterator[RunningServer]:
    """Serve on 127.0.0.1 with a free port for the duration of the ``async with`` block.

    Plugin classes are created here (named after the class, lower-cased); plugin instances are
    used as they are, but share this server's context (``server.notes``).
    """
    config = config or test_config()
    context = ServerContext(config)
    built: list[Plugin] = []
    for p in plugins:
        if isinstance(p, Plugin):
            p.server = context
            built.append(p)
        else:
            built.append(make_plugin(p, config_dir=config_dir, server=context))
    server = Server(config, built, context=context, config_dir=config_dir)
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(server.serve)
        host, port = addresses[0]
        running = RunningServer(server, host, port)
        try:
            yield running
        finally:
            for client in running.clients:
                await trio.aclose_forcefully(client.stream)
            nursery.cancel_scope.cancel()


@dataclass(frozen=True)
class ClientReply:
    code: int
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class SMTPClient:
    """A deliberately literal SMTP client: it sends exactly the bytes it is given."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._buffer = bytearray()

    @classmethod
    async def connect(cls, host: str, port: int, *, read_greeting: bool = True) -> SMTPClient:
        client = cls(await trio.open_tcp_stream(host, port))
        if read_greeting:
            client.greeting = await client.read_reply()
        return client

    greeting: ClientReply

    async def send(self, data: bytes | str) -> None:
        await self.stream.send_all(data.encode() if isinstance(data, str) else data)

    async def _line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 2]
                return line
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError("server closed the connection")
            self._buffer += data

    async def read_reply(self) -> ClientReply:
        lines = []
        while True:
            line = await self._line()
            lines.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return ClientReply(int(line[:3]), lines)

    async def command(self, line: str | bytes) -> ClientReply:
        data = line.encode() if isinstance(line, str) else line
        await self.send(data + b"\r\n")
        return await self.read_reply()

    async def send_message(
        self, sender: str, recipients: Sequence[str], message: bytes | str
    ) -> ClientReply:
        """MAIL, RCPT for each recipient, DATA and the dot-stuffed message, pipelined.

        Returns the reply to the final dot, or the first refusal before it (MAIL or DATA
        refused, or no recipient accepted).
        """
        body = message.encode() if isinstance(message, str) else message
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        stuffed = b"\r\n".join(
            b"." + line if line.startswith(b".") else line for line in body.split(b"\r\n")
        )
        commands = [f"MAIL FROM:<{sender}>"] + [f"RCPT TO:<{r}>" for r in recipients]
        await self.send("".join(f"{c}\r\n" for c in commands) + "DATA\r\n")
        replies = [await self.read_reply() for _ in range(len(commands) + 1)]
        data = replies[-1]
        if replies[0].code >= 400 or data.code != 354:
            return replies[0] if replies[0].code >= 400 else data
        await self.send(stuffed + b".\r\n")
        return await self.read_reply()

    async def starttls(self, context: ssl.SSLContext, server_hostname: str) -> ClientReply:
        """Send STARTTLS and, on 220, switch this client to TLS."""
        reply = await self.command("STARTTLS")
        if reply.code == 220:
            await self.wrap_tls(context, server_hostname)
        return reply

    async def wrap_tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """Start TLS on the connection now (for implicit TLS, before reading the greeting)."""
        tls = trio.SSLStream(self.stream, context, server_hostname=server_hostname)
        await tls.do_handshake()
        self.stream = tls

    async def at_eof(self) -> bool:
        """True once the server has closed the connection (after any buffered reply)."""
        if self._buffer:
            return False
        try:
            return await self.stream.receive_some(1) == b""
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return True

    async def aclose(self) -> None:
        await self.stream.aclose()
