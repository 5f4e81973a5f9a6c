"""DNS lookups for plugins and the outbound side: dnspython's resolver on Trio, with timeouts.

Every lookup answers a plain list (empty when the name does not exist or has no such records)
or raises :class:`DNSTemporaryError` for a failure worth trying again later (timeout, SERVFAIL).
"""

from __future__ import annotations

import dns.asyncbackend
import dns.asyncresolver
import dns.exception
import dns.resolver
import dns.reversename

from .config import DNSSettings


class DNSTemporaryError(Exception):
    """The lookup could not be completed now (timeout, server failure)."""


class Resolver:
    """A caching-free stub resolver with a per-lookup time limit."""

    def __init__(self, settings: DNSSettings) -> None:
        configure = not settings.nameservers
        resolver = dns.asyncresolver.Resolver(configure=configure)
        if settings.nameservers:
            resolver.nameservers = list(settings.nameservers)
        resolver.port = settings.port
        self._resolver = resolver
        self._timeout = settings.timeout
        self._backend = dns.asyncbackend.get_backend("trio")

    async def _records(self, name: str, rdtype: str) -> list[str]:
        try:
            answer = await self._resolver.resolve(
                name,
                rdtype,
                lifetime=self._timeout,
                search=False,
                raise_on_no_answer=False,
                backend=self._backend,
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise DNSTemporaryError(f"{rdtype} {name}: {exc}") from None
        except dns.exception.DNSException as exc:
            raise DNSTemporaryError(f"{rdtype} {name}: {exc}") from None
        return [record.to_text() for record in answer]

    async def ptr(self, ip: str) -> list[str]:
        """Host names for an IPv4 or IPv6 address, without the trailing dot."""
        name = dns.reversename.from_address(ip).to_text()
        return [n.rstrip(".") for n in await self._records(name, "PTR")]

    async def addresses(self, name: str) -> list[str]:
        """The A and AAAA addresses of ``name``."""
        return await self._records(name, "A") + await self._records(name, "AAAA")

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        """MX records as ``(preference, host)``, lowest preference first."""
        records = []
        for text in await self._records(domain, "MX"):
            preference, _, host = text.partition(" ")
            records.append((int(preference), host.rstrip(".")))
        return sorted(records)

    async def txt(self, name: str) -> list[str]:
        return [t.strip('"') for t in await self._records(name, "TXT")]
