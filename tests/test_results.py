"""Results: structured findings per plugin, read by later plugins, JSON round trips, and one
summary line per transaction in the log of a real server."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsmtp import (
    Address,
    Connection,
    Level,
    Outcome,
    Plugin,
    PluginResult,
    RcptParams,
    Results,
    Transaction,
    override,
)
from tsmtp.testing import AcceptAll, CaptureQueue, make_connection, make_transaction, running_server


def test_findings_are_kept_per_plugin_and_read_by_name() -> None:
    results = Results()
    results.add("spf", pass_="mfrom", domain="example.org")
    results.add("spf", pass_=["helo"], fail="ptr", msg="two of three")
    results.add("dnsbl", skip="private address")
    spf = results.get("spf")
    assert spf is not None
    assert (spf.pass_, spf.fail, spf.skip, spf.err, spf.msg) == (
        ["mfrom", "helo"],
        ["ptr"],
        [],
        [],
        ["two of three"],
    )
    assert spf["domain"] == "example.org"
    assert results.has("spf", "pass", "helo")
    assert results.has("spf", "fail", re.compile(r"^pt"))
    assert not results.has("spf", "err", "helo")
    assert not results.has("karma", "pass", "helo")
    assert results.get("karma") is None
    assert "dnsbl" in results and len(results) == 2
    assert [r.plugin for r in results] == ["spf", "dnsbl"]


def test_a_plugin_records_under_its_own_name() -> None:
    class Checker(Plugin):
        pass

    checker = Checker()
    checker.name = "check.helo"
    results = Results()
    results.add(checker, fail="not a FQDN")
    assert results.has("check.helo", "fail", "not a FQDN")
    assert results.get(checker) is results.get("check.helo")
    with pytest.raises(ValueError, match="plugin name"):
        results.add(Checker(), msg="nameless")


def test_fields_are_typed_when_read() -> None:
    results = Results()
    assert results.incr("karma", "score", 2) == 2
    assert results.incr("karma", "score", -0.5) == 1.5
    results.add("karma", connections=3, zones=["a.example"])
    results.push("karma", "zones", "b.example")
    karma = results.get("karma")
    assert karma is not None
    assert karma.field("score", float) == 1.5
    assert karma.field("connections", float) == 3.0, "an int is a float when asked for one"
    assert karma.field("connections", int) == 3
    assert karma.field("missing", str) is None
    assert karma.field("zones", list) == ["a.example", "b.example"]
    with pytest.raises(TypeError, match=r"karma\.score is float, not str"):
        karma.field("score", str)
    with pytest.raises(TypeError, match="not a number"):
        results.incr("karma", "zones")
    with pytest.raises(TypeError, match="not a list"):
        results.push("karma", "score", 1)


@pytest.mark.parametrize(
    "value",
    [{1, 2}, (1, 2), b"bytes", object(), [1, {"a": {2}}], {1: "x"}, float("nan"), [float("inf")]],
)
def test_only_json_values_are_taken(value: object) -> None:
    results = Results()
    with pytest.raises(TypeError, match=r"JSON value|keys must be str"):
        results.add("p", value=value)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"JSON value|keys must be str"):
        results.push("p", "values", value)  # type: ignore[arg-type]
    assert results.get("p") is None, "nothing half-recorded"


def test_kinds_take_strings_and_are_not_fields() -> None:
    results = Results()
    with pytest.raises(TypeError, match="takes strings"):
        results.add("p", fail=[1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="is a kind"):
        results.add("p", **{"pass": "x"})


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_FIELD_NAMES = st.text(min_size=1).filter(lambda n: n not in ("pass", "fail", "skip", "err", "msg"))


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1),
        st.tuples(
            st.lists(st.text(), max_size=3),
            st.lists(st.text(), max_size=3),
            st.dictionaries(_FIELD_NAMES, _JSON, max_size=4),
        ),
        max_size=4,
    )
)
def test_results_survive_a_json_round_trip(
    given_results: dict[str, tuple[list[str], list[str], dict[str, object]]],
) -> None:
    results = Results()
    for plugin, (passed, errors, fields) in given_results.items():
        results.add(plugin, pass_=passed, err=errors)
        for name, value in fields.items():
            results.set(plugin, name, value)  # type: ignore[arg-type]
    data = results.to_json()
    again = Results.from_json(data)
    assert again.to_dict() == results.to_dict()
    assert [r.plugin for r in again] == [r.plugin for r in results]
    assert all(again.get(r.plugin) == r for r in results)
    assert json.loads(data) == json.loads(again.to_json())


@pytest.mark.parametrize(
    "data",
    [b"[]", b'{"p": []}', b'{"p": {"pass": "x"}}', b'{"p": {"fail": [1]}}', b"{"],
)
def test_from_json_refuses_what_is_not_results(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"not results"):
        Results.from_json(data)


def test_the_summary_is_one_line_with_odd_values_quoted() -> None:
    results = Results()
    results.add("spf", pass_=["mfrom", "helo"], domain="example.org")
    results.add("karma", score=-3, msg="bad\nhistory | too", tags=["a b"])
    results.add("quiet")
    assert results.summary() == (
        "spf: pass=mfrom,helo domain=example.org"
        ' | karma: msg="bad\\nhistory | too" score=-3 tags=["a b"]'
        " | quiet"
    )
    assert "\n" not in results.summary()


def test_the_results_line_of_a_transaction_includes_its_connection() -> None:
    connection = make_connection()
    txn = make_transaction(connection)
    assert txn.results_line(connection.results) is None
    connection.results.add("relay_acl", pass_="192.0.2.1")
    assert txn.results_line(connection.results) == "results: connection: relay_acl: pass=192.0.2.1"
    txn.results.add("spam", fail="score", score=7.5)
    assert txn.results_line(connection.results) == (
        "results: spam: fail=score score=7.5; connection: relay_acl: pass=192.0.2.1"
    )
    assert isinstance(txn.results.get("spam"), PluginResult)


# --- through a real server ------------------------------------------------------------------


class Findings(Plugin):
    """Records what it 'found' at connect and after DATA, and what earlier plugins found."""

    @override
    async def hook_connect(self, connection: Connection) -> Outcome:
        connection.results.add(self, pass_="connect", peer=connection.remote.ip)
        return None

    @override
    async def hook_rcpt(
        self, connection: Connection, recipient: Address, params: RcptParams
    ) -> Outcome:
        txn = connection.transaction
        assert txn is not None
        txn.results.push(self, "recipients", recipient.address)
        return None

    @override
    async def hook_data_post(self, connection: Connection, transaction: Transaction) -> Outcome:
        txn = connection.transaction
        assert txn is not None
        seen = connection.results.get(self)
        txn.results.add(self, msg=f"connect result seen: {seen is not None}", size=txn.data_size)
        return None


async def test_one_summary_line_per_transaction_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(Level.INFO, logger="tsmtp")
    async with running_server([Findings, AcceptAll, CaptureQueue]) as srv:
        client = await srv.connect()
        assert (await client.command("EHLO client.test")).code == 250
        message = b"Subject: one\r\n\r\nbody\r\n"
        reply = await client.send_message("a@client.test", ["r@example.org"], message)
        assert reply.code == 250
        assert (await client.command("MAIL FROM:<a@client.test>")).code == 250
        assert (await client.command("RCPT TO:<s@example.org>")).code == 250
        assert (await client.command("RSET")).code == 250
        assert (await client.command("QUIT")).code == 221
        queue = srv.plugin(CaptureQueue)

    lines = [r.getMessage() for r in caplog.records if "results: " in r.getMessage()]
    (captured,) = queue.messages
    assert lines == [
        f"[{captured.uuid}] [core] results: findings: "
        'msg="connect result seen: True" recipients=["r@example.org"] '
        f"size={len(message)}; connection: findings: pass=connect peer=127.0.0.1",
        f"[{captured.uuid[:-1]}2] [core] results: findings: "
        'recipients=["s@example.org"]; connection: findings: pass=connect peer=127.0.0.1',
    ]
    assert Results.from_json(captured.results.to_json()).to_dict() == {
        "findings": {
            "msg": ["connect result seen: True"],
            "recipients": ["r@example.org"],
            "size": len(message),
        }
    }
