"""Notes: the key/value store plugins share at server, connection and transaction level."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Generic, TypeVar, overload

from typing_extensions import override

T = TypeVar("T")


class NoteKey(Generic[T]):
    """A typed key: ``SEEN = NoteKey("greylist.seen", int)`` then ``notes[SEEN]`` is an ``int``.

    The type is checked when the note is set, so a wrong value fails where it is written.
    """

    __slots__ = ("name", "type")

    def __init__(self, name: str, type: type[T]) -> None:
        self.name = name
        self.type = type

    @override
    def __repr__(self) -> str:
        return f"NoteKey({self.name!r}, {self.type.__name__})"


class Notes(MutableMapping[str, object]):
    """A mapping of plain string keys, plus typed access through :class:`NoteKey`."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: dict[str, object] = {}

    @overload
    def __getitem__(self, key: NoteKey[T]) -> T: ...
    @overload
    def __getitem__(self, key: str) -> object: ...
    @override
    def __getitem__(self, key: NoteKey[T] | str) -> object:
        return self._data[key.name if isinstance(key, NoteKey) else key]

    @override
    def __setitem__(self, key: str, value: object) -> None:
        self._data[key] = value

    @override
    def __delitem__(self, key: str) -> None:
        del self._data[key]

    @override
    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    @override
    def __len__(self) -> int:
        return len(self._data)

    @override
    def __contains__(self, key: object) -> bool:
        return (key.name if isinstance(key, NoteKey) else key) in self._data

    def set(self, key: NoteKey[T], value: T) -> None:
        """Set a typed note, checking the value's type."""
        if not isinstance(value, key.type):
            raise TypeError(
                f"note {key.name!r} takes {key.type.__name__}, not {type(value).__name__}"
            )
        self._data[key.name] = value

    def find(self, key: NoteKey[T]) -> T | None:
        """The typed note, or None when unset."""
        value = self._data.get(key.name)
        return value if isinstance(value, key.type) else None

    @override
    def __repr__(self) -> str:
        return f"Notes({self._data!r})"
