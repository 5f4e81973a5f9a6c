"""The hook table: one :class:`~tsmtp.hookspec.HookSpec` per hook, the single source of truth.

Each spec takes its parameters from the ``hook_<name>`` method of :class:`~tsmtp.Plugin` and adds
how its chain runs, which verdicts it may return and the type of a returned ``value``. The
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
from .protocol import Address
from .verdict import Verdict

__all__ = [
    "BY_NAME",
    "Chain",
    "Credentials",
    "Denial",
    "HookSpec",
]

FIRST, ALL = Chain.FIRST, Chain.ALL

# --- the connection, in the order a conversation meets them --------------------------------------
connect_init = HookSpec(Plugin.hook_connect_init, ALL)
lookup_rdns = HookSpec(Plugin.hook_lookup_rdns, value=str)
connect = HookSpec(Plugin.hook_connect)
helo = HookSpec(Plugin.hook_helo)
ehlo = HookSpec(Plugin.hook_ehlo)
capabilities = HookSpec(Plugin.hook_capabilities, ALL)
auth = HookSpec(Plugin.hook_auth, value=str)
mail = HookSpec(Plugin.hook_mail)
rcpt = HookSpec(Plugin.hook_rcpt, value=(Address, list))
rcpt_ok = HookSpec(Plugin.hook_rcpt_ok)
data = HookSpec(Plugin.hook_data)
max_data_exceeded = HookSpec(Plugin.hook_max_data_exceeded)
data_post = HookSpec(Plugin.hook_data_post)
queue = HookSpec(Plugin.hook_queue)
queue_outbound = HookSpec(Plugin.hook_queue_outbound)
queue_ok = HookSpec(Plugin.hook_queue_ok, ALL)
reset_transaction = HookSpec(Plugin.hook_reset_transaction, ALL, always_run=True)
rset = HookSpec(Plugin.hook_rset)
noop = HookSpec(Plugin.hook_noop)
vrfy = HookSpec(Plugin.hook_vrfy)
quit = HookSpec(Plugin.hook_quit)
unrecognized_command = HookSpec(
    Plugin.hook_unrecognized_command,
    verdicts=CONVERSATION_VERDICTS | {Verdict.HOOK},
    value=str,
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
