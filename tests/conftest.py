from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import MemoryQueue


@pytest.fixture(autouse=True)
def _empty_memory_queue() -> Iterator[None]:
    MemoryQueue.stored.clear()
    yield
    MemoryQueue.stored.clear()
