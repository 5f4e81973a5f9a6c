"""What mypy tells a plugin author: mypy, run through its API, on plugin files outside the project.

Each sample is a plugin module of its own; the lines mypy must refuse end in ``# E: <code>``.
All samples are checked in one mypy run (with the flags docs/writing-plugins.md recommends) and
each test looks at its own file's messages. ``tsmtp`` is found as an installed package: the run
happens in an empty directory with an empty config file and no ``MYPYPATH``.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from mypy import api

#: The strictness the plugin docs recommend (and that this project uses for its own plugins).
AUTHOR_FLAGS = ("--strict", "--enable-error-code", "explicit-override")

_MESSAGE = re.compile(
    r"^(?P<path>[^:\n]+):(?P<line>\d+): (?P<severity>error|note): (?P<text>.*?)"
    r"(?:  \[(?P<code>[a-z-]+)\])?$"
)
_EXPECT = re.compile(r"# E: (?P<code>[a-z-]+)\s*$")


@dataclass(frozen=True)
class Message:
    path: str
    line: int
    severity: str
    text: str
    code: str | None


def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One incremental cache for every mypy run of the session, so only the first is slow."""
    return tmp_path_factory.getbasetemp() / "mypy-cache"


def run_mypy(
    files: Sequence[str], *, cwd: Path, cache_dir: Path, flags: Sequence[str] = AUTHOR_FLAGS
) -> tuple[list[Message], str]:
    """Run mypy on ``files`` (relative to ``cwd``) as a plugin author would; messages, output."""
    config = cwd / "empty-mypy.ini"
    config.write_text("[mypy]\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.delenv("MYPYPATH", raising=False)
        stdout, stderr, _status = api.run(
            ["--config-file", str(config), "--cache-dir", str(cache_dir), *flags, *files]
        )
    if stderr.strip():
        raise AssertionError(f"mypy failed to run:\n{stderr}{stdout}")
    messages = [
        Message(m["path"], int(m["line"]), m["severity"], m["text"], m["code"])
        for m in map(_MESSAGE.match, stdout.splitlines())
        if m is not None
    ]
    return messages, stdout


HEADER = """\
from __future__ import annotations

from tsmtp import (
    Address,
    Connection,
    MailParams,
    NoteKey,
    Outcome,
    Plugin,
    PluginConfig,
    RcptParams,
    Transaction,
    Verdict,
    hooks,
    override,
)
"""

SAMPLES = {
    "correct": """
        class LimitConfig(PluginConfig, kw_only=True, frozen=True):
            max_count: int = 10


        SEEN = NoteKey("sample.seen", int)


        class Correct(Plugin):
            config: LimitConfig

            @override
            def register(self) -> None:
                hooks.queue.register(self, self.try_queue)

            async def try_queue(self, connection: Connection, transaction: Transaction) -> Outcome:
                return Verdict.OK

            @override
            async def hook_mail(
                self, connection: Connection, sender: Address, params: MailParams
            ) -> Outcome:
                return Verdict.DENY("5.7.1 no bounces") if sender.is_null else None

            @override
            async def hook_rcpt(
                self, connection: Connection, recipient: Address, params: RcptParams
            ) -> Outcome:
                seen = (connection.notes.find(SEEN) or 0) + 1
                connection.notes.set(SEEN, seen)
                if seen > self.config.max_count:
                    return Verdict.DENYSOFT("too many", code=452)
                return Verdict.OK


        reveal_type(Verdict.DENY("x"))
        """,
    "wrong_parameter_type": """
        class WrongParameterType(Plugin):
            @override
            async def hook_rcpt(
                self, connection: Connection, recipient: str, params: RcptParams  # E: override
            ) -> Outcome:
                return None
        """,
    "sync_hook": """
        class SyncHook(Plugin):
            @override
            def hook_connect(self, connection: Connection) -> Outcome:  # E: override
                return None
        """,
    "wrong_return_type": """
        class WrongReturnType(Plugin):
            @override
            async def hook_helo(self, connection: Connection, hostname: str) -> bool:  # E: override
                return True
        """,
    "returns_garbage": """
        class ReturnsGarbage(Plugin):
            @override
            async def hook_queue(self, connection: Connection, transaction: Transaction) -> Outcome:
                return "OK"  # E: return-value
        """,
    "missing_override": """
        class MissingOverride(Plugin):
            async def hook_quit(self, connection: Connection) -> Outcome:  # E: explicit-override
                return None
        """,
    "misspelt_hook": """
        class MisspeltHook(Plugin):
            @override
            async def hook_rcpt_to(self, connection: Connection) -> Outcome:  # E: misc
                return None
        """,
    "wrong_handler": """
        class WrongHandler(Plugin):
            @override
            def register(self) -> None:
                hooks.queue.register(self, self.takes_a_recipient)  # E: arg-type

            async def takes_a_recipient(self, connection: Connection, rcpt: Address) -> Outcome:
                return None
        """,
}


def sample_source(name: str) -> str:
    return HEADER + "\n\n" + textwrap.dedent(SAMPLES[name]).lstrip("\n")


def expected_errors(source: str) -> set[tuple[int, str]]:
    return {
        (number, match["code"])
        for number, line in enumerate(source.splitlines(), start=1)
        if (match := _EXPECT.search(line)) is not None
    }


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[Message]]]:
    """Every sample checked in one mypy run: the messages of each sample's file."""
    work = tmp_path_factory.mktemp("plugin-samples")
    files = []
    for name in SAMPLES:
        (work / f"sample_{name}.py").write_text(sample_source(name))
        files.append(f"sample_{name}.py")
    messages, _ = run_mypy(files, cwd=work, cache_dir=mypy_cache(tmp_path_factory))
    yield {name: [m for m in messages if m.path == f"sample_{name}.py"] for name in SAMPLES}


def errors(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.severity == "error"]


def assert_refused(messages: list[Message], name: str) -> list[Message]:
    """The sample's errors are exactly the ``# E:`` lines; returns the errors."""
    found = errors(messages)
    assert {(m.line, m.code) for m in found} == expected_errors(sample_source(name)), found
    return found


def test_a_correct_plugin_passes(checked: dict[str, list[Message]]) -> None:
    messages = checked["correct"]
    assert errors(messages) == []
    # tsmtp was really found and typed (an unresolved import would make this "Any").
    assert [m.text for m in messages] == ['Revealed type is "tsmtp.verdict.Result"']


def test_wrong_parameter_type(checked: dict[str, list[Message]]) -> None:
    (error,) = assert_refused(checked["wrong_parameter_type"], "wrong_parameter_type")
    assert '"hook_rcpt"' in error.text
    assert '"Address"' in error.text


def test_sync_hook(checked: dict[str, list[Message]]) -> None:
    (error,) = assert_refused(checked["sync_hook"], "sync_hook")
    assert '"hook_connect"' in error.text
    assert "Coroutine" in error.text


def test_wrong_return_type(checked: dict[str, list[Message]]) -> None:
    (error,) = assert_refused(checked["wrong_return_type"], "wrong_return_type")
    assert '"hook_helo"' in error.text
    assert "bool" in error.text


def test_returning_something_that_is_not_an_outcome(checked: dict[str, list[Message]]) -> None:
    (error,) = assert_refused(checked["returns_garbage"], "returns_garbage")
    assert '"str"' in error.text


def test_hook_without_override(checked: dict[str, list[Message]]) -> None:
    (error,) = assert_refused(checked["missing_override"], "missing_override")
    assert '"hook_quit"' in error.text
    assert "@override" in error.text


def test_misspelt_hook_marked_override(checked: dict[str, list[Message]]) -> None:
    (error,) = assert_refused(checked["misspelt_hook"], "misspelt_hook")
    assert '"hook_rcpt_to"' in error.text
    assert "no base method" in error.text


def test_handler_of_the_wrong_shape(checked: dict[str, list[Message]]) -> None:
    (error,) = assert_refused(checked["wrong_handler"], "wrong_handler")
    assert 'Argument 2 to "register" of "HookSpec"' in error.text
    assert "Callable[[Connection, Transaction], Awaitable[Verdict | Result | None]]" in error.text


def test_missing_override_is_only_caught_with_explicit_override(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Without ``explicit-override`` the same file passes: the flag is what catches it."""
    (tmp_path / "sample_plain_strict.py").write_text(sample_source("missing_override"))
    messages, output = run_mypy(
        ["sample_plain_strict.py"],
        cwd=tmp_path,
        cache_dir=mypy_cache(tmp_path_factory),
        flags=["--strict"],
    )
    assert errors(messages) == [], output
