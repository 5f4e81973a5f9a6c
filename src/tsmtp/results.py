"""Results: what each plugin found about a connection or a transaction.

Where notes are a plugin's private working state, results are its published findings: structured
(``pass``, ``fail``, ``skip``, ``err``, ``msg`` and named fields), read by later plugins
(``connection.results.get("spf")``), logged in one line at the end of each transaction, and
serialisable to JSON for scoring, Authentication-Results fields and per-message logs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal, Protocol, TypeAlias, TypeVar, get_args

import msgspec
from typing_extensions import override

#: A value a result field may hold: what JSON can carry, so results survive a round trip.
JSONValue: TypeAlias = "str | int | float | bool | list[JSONValue] | dict[str, JSONValue] | None"

#: The kinds of finding every result has, as lists of strings.
Kind: TypeAlias = Literal["pass", "fail", "skip", "err", "msg"]
KINDS: tuple[Kind, ...] = get_args(Kind)

T = TypeVar("T")

_PLAIN = re.compile(r"[A-Za-z0-9_.@:/+\-]+")


class _Named(Protocol):
    @property
    def name(self) -> str: ...


def _key(plugin: str | _Named) -> str:
    name = plugin if isinstance(plugin, str) else plugin.name
    if not name:
        raise ValueError("a result needs a plugin name")
    return name


def _strings(kind: str, given: str | Iterable[str]) -> list[str]:
    values = [given] if isinstance(given, str) else list(given)
    for value in values:
        if not isinstance(value, str):
            raise TypeError(f"result {kind!r} takes strings, not {type(value).__name__}")
    return values


def _check_json(value: object, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise TypeError(f"result field {where}: {value} is not a JSON value (JSON has no NaN)")
    if value is None or isinstance(value, str | int | float | bool):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"result field {where}: keys must be str, not {key!r}")
            _check_json(item, f"{where}.{key}")
        return
    raise TypeError(
        f"result field {where}: {type(value).__name__} is not a JSON value "
        "(str, int, float, bool, None, list or dict of them)"
    )


class PluginResult:
    """The findings of one plugin: five lists of strings and named fields.

    ``pass_`` (``"pass"`` in JSON), ``fail``, ``skip``, ``err`` and ``msg`` hold what passed,
    failed, was skipped, went wrong and any remark; ``fields`` holds anything else as JSON
    values (a score, a list of zones, a domain).
    """

    __slots__ = ("err", "fail", "fields", "msg", "pass_", "plugin", "skip")

    def __init__(self, plugin: str) -> None:
        self.plugin = plugin
        self.pass_: list[str] = []
        self.fail: list[str] = []
        self.skip: list[str] = []
        self.err: list[str] = []
        self.msg: list[str] = []
        self.fields: dict[str, JSONValue] = {}

    def of_kind(self, kind: Kind) -> list[str]:
        """The list for ``kind`` (``"pass"`` gives :attr:`pass_`)."""
        if kind == "pass":
            return self.pass_
        if kind not in KINDS:
            raise ValueError(f"no result kind {kind!r}; the kinds are {', '.join(KINDS)}")
        values: list[str] = getattr(self, kind)
        return values

    def has(self, kind: Kind, value: str | re.Pattern[str]) -> bool:
        """Whether ``kind`` holds ``value`` (equal, or matching the pattern anywhere)."""
        if isinstance(value, str):
            return value in self.of_kind(kind)
        return any(value.search(item) for item in self.of_kind(kind))

    def field(self, name: str, type: type[T]) -> T | None:
        """The field ``name`` as a ``type`` (an int is given as a float when asked for one),
        None when unset; TypeError when it holds something else."""
        value = self.fields.get(name)
        if value is None:
            return None
        if type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, type):
            raise TypeError(
                f"result {self.plugin}.{name} is {value.__class__.__name__}, not {type.__name__}"
            )
        return value

    def __getitem__(self, name: str) -> JSONValue:
        return self.fields[name]

    def to_dict(self) -> dict[str, JSONValue]:
        """The JSON form: the non-empty lists under their kind's name, then the fields."""
        out: dict[str, JSONValue] = {}
        for kind in KINDS:
            values = self.of_kind(kind)
            if values:
                out[kind] = list(values)
        out.update(self.fields)
        return out

    def summary(self) -> str:
        """``pass=a,b fail=c score=3``: the non-empty lists, then the fields."""
        words = [
            f"{kind}={','.join(map(_token, self.of_kind(kind)))}"
            for kind in KINDS
            if self.of_kind(kind)
        ]
        words += [f"{_token(name)}={_value_token(value)}" for name, value in self.fields.items()]
        return " ".join(words)

    @override
    def __repr__(self) -> str:
        return f"PluginResult({self.plugin!r}, {self.to_dict()!r})"

    @override
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PluginResult):
            return NotImplemented
        return self.plugin == other.plugin and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


def _token(text: str) -> str:
    return text if _PLAIN.fullmatch(text) else msgspec.json.encode(text).decode()


def _value_token(value: JSONValue) -> str:
    if isinstance(value, str):
        return _token(value)
    return msgspec.json.encode(value).decode()


class Results:
    """The results of every plugin for one connection (``connection.results``) or one
    transaction (``transaction.results``), by plugin name, in the order they were first added.

    A plugin records its own findings with ``results.add(self, pass_="...", score=3)``; later
    plugins read them with ``results.get("spf")``.
    """

    __slots__ = ("_by_plugin",)

    def __init__(self) -> None:
        self._by_plugin: dict[str, PluginResult] = {}

    def add(
        self,
        plugin: str | _Named,
        /,
        *,
        pass_: str | Iterable[str] = (),
        fail: str | Iterable[str] = (),
        skip: str | Iterable[str] = (),
        err: str | Iterable[str] = (),
        msg: str | Iterable[str] = (),
        **fields: JSONValue,
    ) -> PluginResult:
        """Record findings of ``plugin`` (a plugin, or a name): strings are appended to their
        kind's list, fields are set (replacing an earlier value). Returns the plugin's result.

        A field value must be a JSON value; TypeError otherwise, raised here rather than when
        the results are logged. Nothing is recorded when anything given is refused. A field
        whose name is not a Python identifier (or is ``pass_``...) is set with :meth:`set`.
        """
        given: dict[Kind, str | Iterable[str]] = {
            "pass": pass_,
            "fail": fail,
            "skip": skip,
            "err": err,
            "msg": msg,
        }
        return self._record(plugin, given, fields)

    def set(self, plugin: str | _Named, name: str, value: JSONValue) -> None:
        """Set the field ``name`` (any name but the five kinds) to ``value``."""
        self._record(plugin, {}, {name: value})

    def _record(
        self,
        plugin: str | _Named,
        given: Mapping[Kind, str | Iterable[str]],
        fields: Mapping[str, JSONValue],
    ) -> PluginResult:
        key = _key(plugin)
        additions = {kind: _strings(kind, values) for kind, values in given.items()}
        for name, value in fields.items():
            if name in KINDS:
                raise ValueError(f"result field {name!r} is a kind; give it as a keyword")
            _check_json(value, f"{key}.{name}")
        result = self.result(key)
        for kind, values in additions.items():
            result.of_kind(kind).extend(values)
        result.fields.update(fields)
        return result

    def incr(self, plugin: str | _Named, name: str, by: int | float = 1) -> int | float:
        """Add ``by`` to the number in field ``name`` (0 when unset); return the new value."""
        result = self.result(plugin)
        current = result.fields.get(name, 0)
        if isinstance(current, bool) or not isinstance(current, int | float):
            raise TypeError(f"result {result.plugin}.{name} is not a number: {current!r}")
        result.fields[name] = current + by
        return current + by

    def push(self, plugin: str | _Named, name: str, value: JSONValue) -> None:
        """Append ``value`` to the list in field ``name`` (made empty when unset)."""
        _check_json(value, f"{_key(plugin)}.{name}")
        result = self.result(plugin)
        current = result.fields.setdefault(name, [])
        if not isinstance(current, list):
            raise TypeError(f"result {result.plugin}.{name} is not a list: {current!r}")
        current.append(value)

    def result(self, plugin: str | _Named) -> PluginResult:
        """The result of ``plugin``, made empty when it has none yet."""
        key = _key(plugin)
        found = self._by_plugin.get(key)
        if found is None:
            found = self._by_plugin[key] = PluginResult(key)
        return found

    def get(self, plugin: str | _Named) -> PluginResult | None:
        """The result of ``plugin`` (a plugin, or a name such as ``"spf"``), or None."""
        return self._by_plugin.get(_key(plugin))

    def has(self, plugin: str | _Named, kind: Kind, value: str | re.Pattern[str]) -> bool:
        """Whether ``plugin`` recorded ``value`` under ``kind`` (see :meth:`PluginResult.has`)."""
        found = self.get(plugin)
        return found is not None and found.has(kind, value)

    def __contains__(self, plugin: object) -> bool:
        return isinstance(plugin, str) and plugin in self._by_plugin

    def __iter__(self) -> Iterator[PluginResult]:
        return iter(list(self._by_plugin.values()))

    def __len__(self) -> int:
        return len(self._by_plugin)

    def to_dict(self) -> dict[str, dict[str, JSONValue]]:
        return {name: result.to_dict() for name, result in self._by_plugin.items()}

    def to_json(self) -> bytes:
        """``{"spf": {"pass": ["mfrom"], "domain": "example.org"}, ...}``."""
        return msgspec.json.encode(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str) -> Results:
        """Results read back from :meth:`to_json`; ValueError if ``data`` is not of that form."""
        try:
            decoded = msgspec.json.decode(data, type=dict[str, dict[str, Any]])
        except msgspec.DecodeError as exc:  # not JSON, or JSON of another shape
            raise ValueError(f"not results: {exc}") from None
        results = cls()
        for name, entries in decoded.items():
            lists = {kind: entries.pop(kind, []) for kind in KINDS}
            for kind, values in lists.items():
                if not isinstance(values, list):
                    raise ValueError(f"not results: {name}.{kind} is not a list")
            try:
                results._record(name, lists, entries)
            except TypeError as exc:
                raise ValueError(f"not results: {exc}") from None
        return results

    def summary(self) -> str:
        """One line: ``spf: pass=mfrom | karma: score=3``, plugins in the order they reported."""
        return " | ".join(
            f"{result.plugin}: {text}" if (text := result.summary()) else result.plugin
            for result in self._by_plugin.values()
        )

    @override
    def __repr__(self) -> str:
        return f"Results({self.to_dict()!r})"
