"""tsmtp: an SMTP server on Trio in which typed plugins decide what happens to every message.

Write a plugin by subclassing :class:`Plugin` and overriding ``hook_<name>`` methods, each
marked ``@override``; embed the server with :class:`Server`, configured in code with
:class:`ServerConfig`, :class:`Listener` and :class:`PluginSpec`. See ``docs/writing-plugins.md``
and the README's "Embedding" section.
"""

from typing_extensions import override

from . import hooks
from .config import (
    AuthSettings,
    ConfigError,
    DataSettings,
    DNSSettings,
    Limits,
    Listener,
    PluginSettings,
    ProxySettings,
    ServerConfig,
    SNICertificate,
    TLSSettings,
)
from .connection import Connection, Hello, Peer, ServerContext, TLSInfo
from .datafile import DataFile
from .dns import DNSTemporaryError, Resolver
from .headers import Headers
from .hookargs import Credentials, Denial
from .hookspec import Chain, HookSpec
from .lifecycle import PluginTaskError
from .loader import PluginError
from .log import Level
from .message import BodyFilter, MessagePart, MessageTooComplex, MessageTooLarge, line_filter
from .notes import NoteKey, Notes
from .outbound import Bounce, Deferral, Delivery, MailExchanger, OutboundMail
from .passwords import hash_password, read_users, verify_password
from .plugin import HOOK_NAMES, Plugin, PluginConfig
from .protocol import Address, MailParams, RcptParams
from .results import PluginResult, Results
from .server import PluginSpec, Server
from .transaction import Recipient, Transaction
from .verdict import (
    CONT,
    DELAY,
    DENY,
    DENYDISCONNECT,
    DENYSOFT,
    DENYSOFTDISCONNECT,
    DISCONNECT,
    HOOK,
    OK,
    Outcome,
    Result,
    Verdict,
)

__version__ = "0.1.0"

__all__ = [
    "CONT",
    "DELAY",
    "DENY",
    "DENYDISCONNECT",
    "DENYSOFT",
    "DENYSOFTDISCONNECT",
    "DISCONNECT",
    "HOOK",
    "HOOK_NAMES",
    "OK",
    "Address",
    "AuthSettings",
    "BodyFilter",
    "Bounce",
    "Chain",
    "ConfigError",
    "Connection",
    "Credentials",
    "DNSSettings",
    "DNSTemporaryError",
    "DataFile",
    "DataSettings",
    "Deferral",
    "Delivery",
    "Denial",
    "Headers",
    "Hello",
    "HookSpec",
    "Level",
    "Limits",
    "Listener",
    "MailExchanger",
    "MailParams",
    "MessagePart",
    "MessageTooComplex",
    "MessageTooLarge",
    "NoteKey",
    "Notes",
    "OutboundMail",
    "Outcome",
    "Peer",
    "Plugin",
    "PluginConfig",
    "PluginError",
    "PluginResult",
    "PluginSettings",
    "PluginSpec",
    "PluginTaskError",
    "ProxySettings",
    "RcptParams",
    "Recipient",
    "Resolver",
    "Result",
    "Results",
    "SNICertificate",
    "Server",
    "ServerConfig",
    "ServerContext",
    "TLSInfo",
    "TLSSettings",
    "Transaction",
    "Verdict",
    "__version__",
    "hash_password",
    "hooks",
    "line_filter",
    "override",
    "read_users",
    "verify_password",
]
