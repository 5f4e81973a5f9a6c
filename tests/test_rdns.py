"""The rdns plugin against a real DNS server on loopback."""

from __future__ import annotations

from tsmtp import Plugin
from tsmtp.config import DNSSettings
from tsmtp.loader import config_type_of, find_plugin_class
from tsmtp.testing import make_plugin, running_server, test_config

from .dnsserver import dns_server
from .helpers import AcceptAll, MemoryQueue

RECORDS = {
    ("1.0.0.127.in-addr.arpa.", "PTR"): ["client.test."],
    ("client.test.", "A"): ["127.0.0.1"],
    ("liar.test.", "A"): ["192.0.2.55"],
}


def rdns(**settings: bool) -> Plugin:
    cls = find_plugin_class("rdns", [])
    return make_plugin(cls, name="rdns", config=config_type_of(cls)(**settings))


async def test_confirmed_name_reaches_ehlo_and_received() -> None:
    async with dns_server(RECORDS) as port:
        config = test_config(dns=DNSSettings(nameservers=["127.0.0.1"], port=port, timeout=2))
        async with running_server([rdns(), AcceptAll, MemoryQueue], config=config) as srv:
            c = await srv.connect()
            ehlo = await c.command("EHLO helo.test")
            assert ehlo.lines[0] == "tsmtp.test Hello client.test [127.0.0.1]"
            await c.send_message("a@b.c", ["r@d.e"], "hi")
    assert MemoryQueue.stored[0][2].startswith(
        b"Received: from helo.test (client.test [127.0.0.1])"
    )


async def test_unconfirmed_or_missing_names() -> None:
    lying = {
        ("1.0.0.127.in-addr.arpa.", "PTR"): ["liar.test."],
        **{k: v for k, v in RECORDS.items() if k[0] == "liar.test."},
    }
    async with dns_server(lying) as port:
        config = test_config(dns=DNSSettings(nameservers=["127.0.0.1"], port=port, timeout=2))
        async with running_server([rdns(), AcceptAll], config=config) as srv:
            c = await srv.connect()
            assert "Hello 127.0.0.1 [127.0.0.1]" in (await c.command("EHLO x")).lines[0]
        async with running_server([rdns(deny_missing=True)], config=config) as srv:
            c = await srv.connect()
            assert c.greeting.code == 554
    async with dns_server({}) as port:
        config = test_config(dns=DNSSettings(nameservers=["127.0.0.1"], port=port, timeout=2))
        async with running_server([rdns(require_forward_match=False)], config=config) as srv:
            c = await srv.connect()
            assert c.greeting.code == 220
