"""tsmtp.DataFile: a plugin's data file, parsed at start and again whenever it changes."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from tsmtp import Address, DataFile, Level, Plugin, RcptParams, Verdict, hooks, override
from tsmtp.loader import PluginError, find_plugin_class
from tsmtp.testing import call_hook, make_connection, make_plugin


class Owner(Plugin):
    """A plugin that only owns data files."""


#: How the log lines of Owner start (no connection).
OWNER = "[-] [owner] "


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    @override
    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: Level) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]


@pytest.fixture
def logs() -> Iterator[Recorder]:
    logger = logging.getLogger("tsmtp")
    recorder, old_level = Recorder(), logger.level
    logger.addHandler(recorder)
    logger.setLevel(Level.DEBUG)
    yield recorder
    logger.removeHandler(recorder)
    logger.setLevel(old_level)


class Words:
    """A parse function that counts its calls and refuses the word "broken"."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, path: Path) -> list[str]:
        self.calls += 1
        words = path.read_text().split()
        if "broken" in words:
            raise ValueError("the word 'broken' is not allowed")
        return words


def age(path: Path, seconds: float) -> None:
    """Make ``path`` look last modified ``seconds`` ago (an edit long settled)."""
    when = path.stat().st_mtime_ns - int(seconds * 1e9)
    os.utime(path, ns=(when, when))


def words_file(tmp_path: Path, parse: Words, **options: object) -> DataFile[list[str]]:
    owner = make_plugin(Owner, name="owner", config_dir=tmp_path)
    return DataFile(owner, "words", parse, missing=["none"], **options)  # type: ignore[arg-type]


async def test_a_change_is_read_after_the_interval_and_not_before(
    tmp_path: Path, mock_clock: trio.testing.MockClock, logs: Recorder
) -> None:
    path = tmp_path / "words"
    path.write_text("one two\n")
    age(path, 60)
    parse = Words()
    data = words_file(tmp_path, parse, describe=lambda w: f"{len(w)} word(s)")
    assert data.value == ["one", "two"]
    assert logs.at(Level.INFO) == [f"{OWNER}2 word(s) from {path}"]

    path.write_text("one two three\n")  # in place: same inode, new size
    mock_clock.jump(0.99)
    assert data.value == ["one", "two"]
    mock_clock.jump(0.01)
    assert data.value == ["one", "two", "three"]

    replacement = tmp_path / "words.new"
    replacement.write_text("four\n")
    replacement.rename(path)  # a new inode
    mock_clock.jump(1)
    assert data.value == ["four"]

    # A file that is old and unchanged is neither parsed again nor even looked at in between.
    age(path, 60)
    mock_clock.jump(1)
    assert data.value == ["four"]
    calls = parse.calls
    for _ in range(5):
        mock_clock.jump(1)
        assert data.value == ["four"]
    assert parse.calls == calls
    path.unlink()
    mock_clock.jump(0.5)
    assert data.value == ["four"]  # no stat within the interval


async def test_a_same_size_rewrite_of_a_fresh_file_is_seen(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    """An edit within the timestamp resolution of the previous one changes no stamp field; a
    file changed in the last seconds is therefore parsed again at the next look."""
    path = tmp_path / "words"
    path.write_text("aaa\n")
    data = words_file(tmp_path, Words())
    assert data.value == ["aaa"]
    stamp = path.stat()
    path.write_text("bbb\n")
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert path.stat().st_ino == stamp.st_ino and path.stat().st_size == stamp.st_size
    mock_clock.jump(1)
    assert data.value == ["bbb"]


async def test_a_broken_change_keeps_the_old_content_and_is_logged_once(
    tmp_path: Path, mock_clock: trio.testing.MockClock, logs: Recorder
) -> None:
    path = tmp_path / "words"
    path.write_text("good\n")
    parse = Words()
    data = words_file(tmp_path, parse)
    path.write_text("broken words\n")
    for _ in range(4):
        mock_clock.jump(1)
        assert data.value == ["good"]
    assert logs.at(Level.ERROR) == [
        f"{OWNER}{path}: the word 'broken' is not allowed; keeping the content read before"
    ]
    path.write_text("fixed\n")
    mock_clock.jump(1)
    assert data.value == ["fixed"]
    path.write_text("broken again\n")
    mock_clock.jump(1)
    assert data.value == ["fixed"]
    assert len(logs.at(Level.ERROR)) == 2  # a new breakage is news again


async def test_a_missing_file_gives_the_missing_value(
    tmp_path: Path, mock_clock: trio.testing.MockClock, logs: Recorder
) -> None:
    path = tmp_path / "words"
    data = words_file(tmp_path, Words(), describe=lambda w: f"{len(w)} word(s)")
    assert data.value == ["none"]
    path.write_text("here\n")
    mock_clock.jump(1)
    assert data.value == ["here"]
    path.unlink()
    for _ in range(3):
        mock_clock.jump(1)
        assert data.value == ["none"]
    missing = f"{OWNER}{path} does not exist: 1 word(s) until it does"
    assert logs.at(Level.WARN) == [missing, missing]  # at start, then once when it went


def test_a_broken_file_at_start_raises(tmp_path: Path) -> None:
    (tmp_path / "words").write_text("broken\n")
    with pytest.raises(ValueError, match="'broken' is not allowed"):
        words_file(tmp_path, Words())


def test_outside_trio_every_access_looks(tmp_path: Path) -> None:
    path = tmp_path / "words"
    path.write_text("one\n")
    data = words_file(tmp_path, Words())
    path.write_text("one two\n")
    assert data.value == ["one", "two"]


def test_a_private_file_readable_by_others_is_warned_about(tmp_path: Path, logs: Recorder) -> None:
    path = tmp_path / "words"
    path.write_text("secret\n")
    path.chmod(0o600)
    words_file(tmp_path, Words(), private=True)
    assert logs.at(Level.WARN) == []
    path.chmod(0o644)
    words_file(tmp_path, Words(), private=True)
    assert logs.at(Level.WARN) == [f"{OWNER}{path} can be read by other users; chmod 600 it"]


# --- the bundled plugins that use it ----------------------------------------------------------


async def test_in_host_list_reads_the_list_again(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    host_list = tmp_path / "host_list"
    host_list.write_text("example.com  # ours\n")
    cls = find_plugin_class("rcpt_to.in_host_list", [])
    plugin = make_plugin(cls, name="rcpt_to.in_host_list", config_dir=tmp_path)
    conn = make_connection()

    async def verdict(address: str) -> Verdict:
        local, domain = address.split("@")
        result = await call_hook(plugin, hooks.rcpt, conn, Address(local, domain), RcptParams())
        return result.verdict

    assert await verdict("a@example.com") is Verdict.OK
    assert await verdict("a@example.org") is Verdict.CONT
    host_list.write_text("example.com\nEXAMPLE.ORG.\n")
    mock_clock.jump(1)
    assert await verdict("a@example.org") is Verdict.OK
    host_list.write_bytes(b"\xff\n")  # not UTF-8: the old list stays
    mock_clock.jump(1)
    assert await verdict("a@example.org") is Verdict.OK


def test_in_host_list_refuses_to_start_with_a_broken_file(tmp_path: Path) -> None:
    (tmp_path / "host_list").write_bytes(b"\xff\n")
    cls = find_plugin_class("rcpt_to.in_host_list", [])
    with pytest.raises(PluginError, match="UnicodeDecodeError"):
        make_plugin(cls, name="rcpt_to.in_host_list", config_dir=tmp_path)
