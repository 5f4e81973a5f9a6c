"""Look up the client's host name (``lookup_rdns``), optionally forward-confirmed.

The name goes into ``connection.remote.host`` (logs, Received header, EHLO reply). With
``require_forward_match`` the name counts only if it resolves back to the client's address
(FCrDNS). With ``deny_missing``, clients without a usable name are refused (554); a DNS
failure is a temporary refusal (421) only when ``deny_missing`` is on, else ignored.

Later plugins read every name the address has from the connection note :data:`NAMES`
(``from tsmtp.bundled.rdns import NAMES``; ``connection.notes.find(NAMES)``).
"""

from __future__ import annotations

import ipaddress

from tsmtp import (
    Connection,
    DNSTemporaryError,
    NoteKey,
    Outcome,
    Plugin,
    PluginConfig,
    Verdict,
    override,
)

#: The PTR names of the client's address, set when a usable name was found.
NAMES: NoteKey[list[str]] = NoteKey("rdns.names", list)


class RdnsConfig(PluginConfig, kw_only=True, frozen=True):
    require_forward_match: bool = True
    deny_missing: bool = False


class Rdns(Plugin):
    config: RdnsConfig

    async def _confirmed(self, name: str, ip: str) -> bool:
        wanted = ipaddress.ip_address(ip)
        for address in await self.server.resolver.addresses(name):
            try:
                if ipaddress.ip_address(address) == wanted:
                    return True
            except ValueError:
                continue
        return False

    @override
    async def hook_lookup_rdns(self, connection: Connection) -> Outcome:
        ip = connection.remote.ip
        try:
            names = await self.server.resolver.ptr(ip)
            for name in names[:5]:
                if not self.config.require_forward_match or await self._confirmed(name, ip):
                    connection.notes.set(NAMES, list(names))
                    return Verdict.OK(value=name)
        except DNSTemporaryError as exc:
            self.lognotice(f"rDNS lookup for {ip} failed: {exc}", connection)
            return Verdict.DENYSOFT if self.config.deny_missing else None
        self.loginfo(f"no {'confirmed ' if names else ''}rDNS name for {ip}", connection)
        return Verdict.DENY if self.config.deny_missing else None
