"""A tiny authoritative DNS server on 127.0.0.1 for tests (UDP, answers from a dict)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import dns.message
import dns.rcode
import dns.rrset
import trio

Records = dict[tuple[str, str], list[str]]


@asynccontextmanager
async def dns_server(records: Records) -> AsyncIterator[int]:
    """Serve ``{(name, type): [rdata, ...]}``; a missing name is NXDOMAIN. Yields the port."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    async def serve() -> None:
        while True:
            data, peer = await sock.recvfrom(4096)
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().lower()
            kind = dns.rdatatype.to_text(question.rdtype)
            known = {n for n, _ in records}
            if name not in known:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif (name, kind) in records:
                response.answer.append(
                    dns.rrset.from_text_list(name, 60, "IN", kind, records[(name, kind)])
                )
            await sock.sendto(response.to_wire(), peer)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        try:
            yield port
        finally:
            nursery.cancel_scope.cancel()
            sock.close()
