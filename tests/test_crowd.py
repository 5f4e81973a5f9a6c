"""A crowd of idle or slow connections cannot lock legitimate clients out: a full server closes
the connection idle longest, and a stressed one gives waiting clients short timeouts and ends
them at their first error."""

from __future__ import annotations

import trio

from tsmtp.config import Limits
from tsmtp.occupancy import Occupancy
from tsmtp.testing import SMTPClient, running_server, test_config

from .helpers import AcceptAll, MemoryQueue, wait_for


async def test_a_full_server_closes_the_longest_idle_connection_to_make_room() -> None:
    config = test_config(limits=Limits(max_connections=3))
    async with running_server([AcceptAll, MemoryQueue], config=config) as srv:
        oldest, middle, busy = [await srv.connect() for _ in range(3)]
        for client in (oldest, middle, busy):
            assert (await client.command("EHLO crowd.test")).code == 250
        assert (await middle.command("NOOP")).code == 250  # active, but idle since this
        assert (await busy.command("MAIL FROM:<a@b.test>")).code == 250  # in a transaction
        newcomer = await srv.connect()
        assert newcomer.greeting.code == 220
        closing = await oldest.read_reply()
        assert closing.code == 421 and "busy" in closing.text
        assert await oldest.at_eof()
        # The newcomer is served, and so are the others.
        assert (await newcomer.command("EHLO new.test")).code == 250
        reply = await newcomer.send_message("a@b.test", ["c@d.test"], "Subject: hi\r\n\r\nhi")
        assert reply.code == 250
        assert (await busy.command("RCPT TO:<c@d.test>")).code == 250
        # Next in line: the middle one, idle since its NOOP, before the newcomer's last command
        # (and the busy one is in a transaction).
        second = await srv.connect()
        assert second.greeting.code == 220
        assert (await middle.read_reply()).code == 421
        assert (await newcomer.command("NOOP")).code == 250


async def test_full_with_no_idle_connection_refuses_the_newcomer() -> None:
    config = test_config(limits=Limits(max_connections=2))
    async with running_server([AcceptAll], config=config) as srv:
        for _ in range(2):
            client = await srv.connect()
            await client.command("EHLO crowd.test")
            await client.command("MAIL FROM:<a@b.test>")
        refused = await srv.connect()
        assert refused.greeting.code == 421


async def test_stress_shortens_the_waits_of_idle_connections(autojump_clock: object) -> None:
    limits = Limits(max_connections=10, stress_threshold=0.5, stress_command_timeout=10)
    async with running_server([], config=test_config(limits=limits)) as srv:
        occupancy = srv.server.runtime.occupancy
        calm = [await srv.connect() for _ in range(4)]
        assert not occupancy.stressed
        await trio.sleep(60)  # far below command_timeout: nothing happens
        for client in calm:
            assert (await client.command("NOOP")).code == 250
        fifth = await srv.connect()  # the fifth connection: stressed from here
        assert occupancy.stressed
        await trio.sleep(11)
        for client in [*calm, fifth]:
            reply = await client.read_reply()
            assert reply.code == 421 and "Timeout" in reply.text
            assert await client.at_eof()
        await wait_for(lambda: srv.server.active_connections == 0)
        assert not occupancy.stressed


async def test_under_stress_the_first_error_ends_a_connection() -> None:
    limits = Limits(max_connections=10, stress_threshold=0.2)
    async with running_server([], config=test_config(limits=limits)) as srv:
        first = await srv.connect()
        assert (await first.command("BOGUS")).code == 500  # not stressed: one error is fine
        assert (await first.command("NOOP")).code == 250
        second = await srv.connect()
        assert srv.server.runtime.occupancy.stressed
        assert (await second.command("BOGUS")).code == 500
        assert (await second.read_reply()).code == 421
        assert await second.at_eof()


async def test_slow_trickling_clients_are_cut_off_under_stress(autojump_clock: object) -> None:
    limits = Limits(max_connections=4, stress_threshold=0.5, stress_command_timeout=10)
    async with running_server([], config=test_config(limits=limits)) as srv:
        tricklers: list[SMTPClient] = [await srv.connect() for _ in range(2)]
        assert srv.server.runtime.occupancy.stressed
        for _ in range(6):  # one byte every 2 s: each read is in time, the line is not
            for client in tricklers:
                await client.send(b"N")
            await trio.sleep(2)
        for client in tricklers:
            assert (await client.read_reply()).code == 421


def test_stress_has_hysteresis() -> None:
    occupancy = Occupancy(stress_at=10)
    for _ in range(10):
        occupancy.opened()
    assert occupancy.stressed
    occupancy.closed()  # 9 open: still stressed, until below 90 % of the threshold
    assert occupancy.stressed
    for _ in range(2):
        occupancy.closed()
    assert not occupancy.stressed
