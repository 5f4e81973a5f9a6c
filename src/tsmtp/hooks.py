"""The hook table: one :class:`~tsmtp.hookspec.HookSpec` per hook, the single source of truth.

Each spec takes its parameters from the ``hook_<name>`` method of :class:`~tsmtp.Plugin` and adds
how its chain runs, which verdicts it may return, the type of a returned ``value`` and the
replies of a DENY / DENYSOFT without a text of their own. The
runner, ``HookSpec.register``, ``call_hook`` and ``tsmtp check --hooks`` all read this table::

    from tsmtp import hooks

    def register(self) -> None:
        hooks.rcpt.register(self, self.check_recipient, priority=-10)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .hookargs import Credentials, Denial
from .hookspec import CONVERSATION_VERDICTS, SERVER_VERDICTS, Chain, HookSpec
from .plugin import Plugin
from .protocol import Address, Reply
from .verdict import Verdict

__all__ = [
    "BY_NAME",
    "Chain",
    "Credentials",
    "Denial",
    "HookSpec",
]

FIRST, ALL = Chain.FIRST, Chain.ALL


def _r(code: int, enhanced: str, text: str) -> Reply:
    return Reply.of(code, text, enhanced)


# --- the connection, in the order a conversation meets them --------------------------------------
connect_init = HookSpec(Plugin.hook_connect_init, ALL)
lookup_rdns = HookSpec(
    Plugin.hook_lookup_rdns,
    value=str,
    refusals=(_r(554, "5.7.1", "rDNS lookup failed"), _r(421, "4.7.0", "rDNS temporary failure")),
)
connect = HookSpec(
    Plugin.hook_connect,
    refusals=(
        _r(554, "5.7.1", "Your mail is not welcome here"),
        _r(421, "4.7.0", "Come back later"),
    ),
)
_HELLO_REFUSALS = (
    _r(550, "5.7.1", "HELO denied"),
    _r(450, "4.7.1", "HELO denied, try again later"),
)
helo = HookSpec(Plugin.hook_helo, refusals=_HELLO_REFUSALS)
ehlo = HookSpec(Plugin.hook_ehlo, refusals=_HELLO_REFUSALS)
capabilities = HookSpec(Plugin.hook_capabilities, ALL)
auth = HookSpec(
    Plugin.hook_auth,
    value=str,
    refusals=(
        _r(535, "5.7.8", "Authentication credentials invalid"),
        _r(454, "4.7.0", "Temporary authentication failure"),
    ),
)
mail = HookSpec(Plugin.hook_mail)
rcpt = HookSpec(Plugin.hook_rcpt, value=(Address, list))
rcpt_ok = HookSpec(Plugin.hook_rcpt_ok)
data = HookSpec(
    Plugin.hook_data,
    refusals=(
        _r(554, "5.7.1", "Message denied"),
        _r(451, "4.7.1", "Message denied, try again later"),
    ),
)
max_data_exceeded = HookSpec(
    Plugin.hook_max_data_exceeded,
    refusals=(
        _r(552, "5.3.4", "Message size exceeds fixed maximum message size"),
        _r(452, "4.3.1", "Message too big for now, try again later"),
    ),
)
data_post = HookSpec(
    Plugin.hook_data_post,
    refusals=(_r(550, "5.7.1", "Message denied"), _r(450, "4.7.1", "Message denied temporarily")),
)
_QUEUE_REFUSALS = (
    _r(550, "5.3.0", "Message refused"),
    _r(451, "4.3.0", "Message not queued, try again later"),
)
queue = HookSpec(Plugin.hook_queue, refusals=_QUEUE_REFUSALS)
queue_outbound = HookSpec(Plugin.hook_queue_outbound, refusals=_QUEUE_REFUSALS)
queue_ok = HookSpec(Plugin.hook_queue_ok, ALL)
reset_transaction = HookSpec(Plugin.hook_reset_transaction, ALL, always_run=True)
rset = HookSpec(
    Plugin.hook_rset,
    refusals=(_r(550, "5.7.1", "RSET denied"), _r(421, "4.7.0", "RSET denied, closing connection")),
)
noop = HookSpec(
    Plugin.hook_noop,
    refusals=(_r(500, "5.5.1", "Stop wasting my time"), _r(450, "4.5.1", "Stop wasting my time")),
)
vrfy = HookSpec(
    Plugin.hook_vrfy,
    refusals=(
        _r(550, "5.7.1", "Access denied"),
        _r(450, "4.7.1", "Lookup failed, try again later"),
    ),
)
quit = HookSpec(Plugin.hook_quit)
unrecognized_command = HookSpec(
    Plugin.hook_unrecognized_command,
    verdicts=CONVERSATION_VERDICTS | {Verdict.HOOK},
    value=str,
    refusals=(
        _r(500, "5.5.1", "Unrecognized command"),
        _r(450, "4.5.1", "Command refused, try again later"),
    ),
)
deny = HookSpec(Plugin.hook_deny)
disconnect = HookSpec(Plugin.hook_disconnect, ALL, always_run=True)
pre_send_trans_email = HookSpec(Plugin.hook_pre_send_trans_email)

# --- the server and outbound delivery ------------------------------------------------------------
init_master = HookSpec(Plugin.hook_init_master, ALL)
init_child = HookSpec(Plugin.hook_init_child, ALL)
get_mx = HookSpec(Plugin.hook_get_mx)
send_email = HookSpec(
    Plugin.hook_send_email, verdicts=SERVER_VERDICTS | {Verdict.DELAY}, value=(int, float)
)
deferred = HookSpec(Plugin.hook_deferred, value=(int, float))
bounce = HookSpec(Plugin.hook_bounce)
delivered = HookSpec(Plugin.hook_delivered, ALL)

#: Every hook by name, in the order above.
BY_NAME: Mapping[str, HookSpec[Any]] = {
    spec.name: spec for spec in list(globals().values()) if isinstance(spec, HookSpec)
}
