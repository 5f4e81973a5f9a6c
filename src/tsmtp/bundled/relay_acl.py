"""Let clients from listed networks relay: sets ``connection.relaying`` at connect."""

from __future__ import annotations

import ipaddress

import msgspec

from tsmtp import Connection, Outcome, Plugin, PluginConfig, override

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RelayAclConfig(PluginConfig, kw_only=True, frozen=True):
    #: Networks allowed to relay, such as ``"192.0.2.0/24"`` or ``"::1"``.
    allow: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        for network in self.allow:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"allow: {network!r} is not an IP network") from None


class RelayAcl(Plugin):
    config: RelayAclConfig

    @override
    def register(self) -> None:
        self.networks: list[Network] = [
            ipaddress.ip_network(n, strict=False) for n in self.config.allow
        ]

    def allows(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    @override
    async def hook_connect_init(self, connection: Connection) -> Outcome:
        if self.allows(connection.remote.ip):
            connection.relaying = True
            self.loginfo(f"{connection.remote.ip} may relay", connection)
        return None
