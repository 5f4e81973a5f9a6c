"""Password hashes, the users file, ``tsmtp passwd`` and the ``auth.flat_file`` plugin."""

from __future__ import annotations

import base64
import getpass
import hashlib
import io
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from tsmtp import Credentials, Level, Plugin, Verdict, hooks, override
from tsmtp.loader import PluginError, find_plugin_class
from tsmtp.passwords import (
    hash_password,
    is_password_hash,
    passwd_main,
    read_users,
    set_password,
    verify_password,
)
from tsmtp.testing import call_hook, make_connection, make_plugin

INVALID = ("5.7.8 Authentication credentials invalid",)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def scrypt_entry(password: str, n: int = 2**10, r: int = 8, p: int = 1) -> str:
    """A hash made here by hand, with other parameters than hash_password's defaults."""
    salt = b"0123456789abcdef"
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


# --- hashing ----------------------------------------------------------------------------------


def test_hash_and_verify_round_trip() -> None:
    encoded = hash_password("correct horse")
    assert encoded.startswith("scrypt$16384$8$1$")
    assert is_password_hash(encoded)
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct horsE", encoded)
    assert not verify_password("", encoded)


def test_non_ascii_password() -> None:
    encoded = hash_password("pässwörd ✓")
    assert verify_password("pässwörd ✓", encoded)
    assert not verify_password("passwörd ✓", encoded)
    # A string UTF-8 cannot encode is a wrong password, not an exception.
    assert not verify_password("\udc80", encoded)


def test_hashes_are_salted() -> None:
    first, second = hash_password("same"), hash_password("same")
    assert first != second
    assert first.split("$")[4] != second.split("$")[4]
    assert verify_password("same", first) and verify_password("same", second)


def test_parameters_are_read_from_the_hash() -> None:
    assert verify_password("old", scrypt_entry("old", n=2**10, r=4, p=2))
    assert not verify_password("new", scrypt_entry("old", n=2**10, r=4, p=2))


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "secret",
        "scrypt",
        "scrypt$16384$8$1$c2FsdHNhbHRzYWx0$",
        "bcrypt$16384$8$1$c2FsdHNhbHRzYWx0c2FsdA$c2FsdHNhbHRzYWx0c2FsdA",
        scrypt_entry("x").replace("scrypt$1024", "scrypt$1000"),  # n not a power of two
        scrypt_entry("x").replace("scrypt$1024", "scrypt$+1024"),
        scrypt_entry("x").replace("scrypt$1024", "scrypt$2147483648"),  # far too costly
        scrypt_entry("x").replace("$8$1$", "$0$1$"),
        scrypt_entry("x").replace("$8$1$", "$8$99$"),
        scrypt_entry("x").replace("$8$1$", "$512$1$"),  # too much memory
        scrypt_entry("x") + "$extra",
        scrypt_entry("x")[:-10] + "!!!!!!!!!!",  # not base64
        "scrypt$1024$8$1$c2FsdA$" + "A" * 43,  # salt too short
        "scrypt$1024$8$1$" + "A" * 22 + "$QUJD",  # key too short
    ],
)
def test_malformed_hashes_never_verify(encoded: str) -> None:
    assert not is_password_hash(encoded)
    assert verify_password("x", encoded) is False


# --- the users file ---------------------------------------------------------------------------


def test_read_users(tmp_path: Path) -> None:
    alice, bob = hash_password("a"), scrypt_entry("b")
    users_file = tmp_path / "users"
    users_file.write_text(f"# users\n\nalice:{alice}\n   # indented comment\n  bob:{bob}  \n")
    assert read_users(users_file) == {"alice": alice, "bob": bob}
    assert read_users(str(users_file)) == {"alice": alice, "bob": bob}


def test_read_users_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_users(tmp_path / "nothing")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("alice", "expected 'username:hash', found no ':'"),
        (":" + scrypt_entry("x"), "user name is empty"),
        ("al ice:" + scrypt_entry("x"), "contains whitespace"),
        ("alice:", "not a password hash"),
        ("alice:scrypt$1024$8$1$x$y", "not base64"),
    ],
)
def test_read_users_malformed_line(tmp_path: Path, line: str, expected: str) -> None:
    users_file = tmp_path / "users"
    users_file.write_text(f"# comment\nbob:{scrypt_entry('b')}\n{line}\n")
    with pytest.raises(ValueError, match=expected) as info:
        read_users(users_file)
    assert str(info.value).startswith(f"{users_file}, line 3: ")


def test_read_users_refuses_plain_text(tmp_path: Path) -> None:
    users_file = tmp_path / "users"
    users_file.write_text("alice:hunter2\n")
    with pytest.raises(
        ValueError, match=r"line 1: the entry for 'alice' is not a password hash"
    ) as info:
        read_users(users_file)
    assert "hunter2" not in str(info.value)  # the message never shows what might be a password


def test_read_users_refuses_duplicates(tmp_path: Path) -> None:
    users_file = tmp_path / "users"
    users_file.write_text(f"alice:{scrypt_entry('a')}\nalice:{scrypt_entry('b')}\n")
    with pytest.raises(ValueError, match=r"line 2: user 'alice' is listed twice"):
        read_users(users_file)


def test_read_users_not_utf8(tmp_path: Path) -> None:
    users_file = tmp_path / "users"
    users_file.write_bytes(b"\xff\xfe:x\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_users(users_file)


def test_set_password_creates_the_file_mode_0600(tmp_path: Path) -> None:
    users_file = tmp_path / "users"
    set_password(users_file, "alice", "s3cret")
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    users = read_users(users_file)
    assert list(users) == ["alice"]
    assert verify_password("s3cret", users["alice"])
    assert "s3cret" not in users_file.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users"]  # no temp file left


def test_set_password_adds_and_replaces_keeping_other_lines(tmp_path: Path) -> None:
    users_file = tmp_path / "users"
    bob = scrypt_entry("bob")
    users_file.write_text(f"# header\n\nalice:{scrypt_entry('old')}\n# about bob\nbob:{bob}")
    users_file.chmod(0o640)

    set_password(users_file, "alice", "new")
    lines = users_file.read_text().splitlines()
    assert lines[:2] == ["# header", ""]
    assert lines[2].startswith("alice:scrypt$16384$")
    assert lines[3:] == ["# about bob", f"bob:{bob}"]
    assert verify_password("new", read_users(users_file)["alice"])
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o640  # an existing file keeps its mode

    set_password(users_file, "carol", "c")
    lines = users_file.read_text().splitlines()
    assert len(lines) == 6
    assert lines[4] == f"bob:{bob}"  # the missing final newline was added before appending
    users = read_users(users_file)
    assert list(users) == ["alice", "bob", "carol"]
    assert verify_password("c", users["carol"])
    assert verify_password("bob", users["bob"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users"]


def test_set_password_replaces_a_plain_text_entry(tmp_path: Path) -> None:
    users_file = tmp_path / "users"
    users_file.write_text("alice:plaintext\n")
    set_password(users_file, "alice", "hashed now")
    assert verify_password("hashed now", read_users(users_file)["alice"])


@pytest.mark.parametrize("username", ["", "a:b", "a b", "a\tb", "#alice", "a\x00b"])
def test_set_password_refuses_bad_user_names(tmp_path: Path, username: str) -> None:
    with pytest.raises(ValueError):
        set_password(tmp_path / "users", username, "pw")
    assert not (tmp_path / "users").exists()


def test_set_password_refuses_an_empty_password(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        set_password(tmp_path / "users", "alice", "")


# --- tsmtp passwd -----------------------------------------------------------------------------


def test_passwd_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    users_file = tmp_path / "users"
    monkeypatch.setattr("sys.stdin", io.StringIO("pass with spaces \nignored\n"))
    assert passwd_main(["--file", str(users_file), "--password-stdin", "alice"]) == 0
    assert "alice" in capsys.readouterr().out
    assert verify_password("pass with spaces ", read_users(users_file)["alice"])
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600


def test_passwd_default_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\r\n"))
    assert passwd_main(["--password-stdin", "alice"]) == 0
    assert verify_password("pw", read_users(tmp_path / "config" / "auth_users")["alice"])


def test_passwd_prompts_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["typed", "typed"])
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    assert passwd_main(["--file", str(tmp_path / "users"), "bob"]) == 0
    assert len(prompts) == 2 and "bob" in prompts[0]
    assert verify_password("typed", read_users(tmp_path / "users")["bob"])


def test_passwd_prompts_must_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(["one", "two"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    assert passwd_main(["--file", str(tmp_path / "users"), "bob"]) == 2
    assert "do not match" in capsys.readouterr().err
    assert not (tmp_path / "users").exists()


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["--password-stdin", "a:b"], "pw\n", "contains ':'"),
        (["--password-stdin", "a b"], "pw\n", "whitespace"),
        (["--password-stdin", "alice"], "", "no password"),
        (["--password-stdin", "alice"], "\n", "password is empty"),
        (["--password-stdin"], "pw\n", "required"),
        (["--password-stdin", "--bogus", "alice"], "pw\n", "unrecognized arguments"),
        (["--password-stdin", "alice", "bob"], "pw\n", "unrecognized arguments"),
    ],
)
def test_passwd_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    stdin: str,
    message: str,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert passwd_main(["--file", str(tmp_path / "users"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "users").exists()


def test_passwd_unwritable_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    target = tmp_path / "no such dir" / "users"
    assert passwd_main(["--file", str(target), "--password-stdin", "alice"]) == 2
    assert str(target) in capsys.readouterr().err


def test_passwd_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert passwd_main(["--help"]) == 0
    assert "tsmtp passwd" in capsys.readouterr().out


# --- the auth.flat_file plugin ----------------------------------------------------------------


@pytest.fixture
def flat_file() -> type[Plugin]:
    """The plugin class, found by name the way the server finds it."""
    return find_plugin_class("auth.flat_file", [])


class Keep(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    @override
    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logs() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("tsmtp")
    handler, old_level = Keep(records), logger.level
    logger.addHandler(handler)
    logger.setLevel(Level.PROTOCOL)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def messages(records: list[logging.LogRecord], level: Level) -> list[str]:
    return [r.getMessage() for r in records if r.levelno == level]


async def test_plugin_accepts_and_refuses(
    tmp_path: Path, flat_file: type[Plugin], logs: list[logging.LogRecord]
) -> None:
    set_password(tmp_path / "auth_users", "alice", "secret")
    set_password(tmp_path / "auth_users", "bob", "other")
    plugin = make_plugin(flat_file, name="auth.flat_file", config_dir=tmp_path)
    conn = make_connection()

    ok = await call_hook(plugin, hooks.auth, conn, Credentials("PLAIN", "alice", "secret"))
    assert ok.verdict is Verdict.OK
    wrong = await call_hook(plugin, hooks.auth, conn, Credentials("PLAIN", "alice", "other"))
    assert (wrong.verdict, wrong.message) == (Verdict.DENY, INVALID)
    unknown = await call_hook(plugin, hooks.auth, conn, Credentials("LOGIN", "mallory", "secret"))
    assert (unknown.verdict, unknown.message) == (Verdict.DENY, INVALID)
    case = await call_hook(plugin, hooks.auth, conn, Credentials("PLAIN", "Alice", "secret"))
    assert case.verdict is Verdict.DENY

    notices = messages(logs, Level.NOTICE)
    assert any("'alice'" in m and "wrong password" in m for m in notices)
    assert any("'mallory'" in m and "unknown user" in m for m in notices)
    assert any("'alice'" in m and "succeeded" in m for m in messages(logs, Level.INFO))
    assert not any("secret" in r.getMessage() or "other" in r.getMessage() for r in logs)


async def test_plugin_authzid(tmp_path: Path, flat_file: type[Plugin]) -> None:
    set_password(tmp_path / "auth_users", "alice", "secret")
    set_password(tmp_path / "auth_users", "bob", "bobpw")
    plugin = make_plugin(flat_file, name="auth.flat_file", config_dir=tmp_path)
    conn = make_connection()
    same = await call_hook(
        plugin, hooks.auth, conn, Credentials("PLAIN", "alice", "secret", "alice")
    )
    assert same.verdict is Verdict.OK
    other = await call_hook(
        plugin, hooks.auth, conn, Credentials("PLAIN", "alice", "secret", "bob")
    )
    assert (other.verdict, other.message) == (Verdict.DENY, INVALID)


async def test_plugin_file_setting(tmp_path: Path, flat_file: type[Plugin]) -> None:
    (tmp_path / "auth.flat_file.toml").write_text('file = "users/smtp"\n')
    (tmp_path / "users").mkdir()
    set_password(tmp_path / "users" / "smtp", "alice", "secret")
    plugin = make_plugin(flat_file, name="auth.flat_file", config_dir=tmp_path)
    result = await call_hook(
        plugin, hooks.auth, make_connection(), Credentials("PLAIN", "alice", "secret")
    )
    assert result.verdict is Verdict.OK


async def test_plugin_without_users_file(
    tmp_path: Path, flat_file: type[Plugin], logs: list[logging.LogRecord]
) -> None:
    plugin = make_plugin(flat_file, name="auth.flat_file", config_dir=tmp_path)
    assert any("does not exist" in m for m in messages(logs, Level.WARN))
    result = await call_hook(plugin, hooks.auth, make_connection(), Credentials("PLAIN", "a", "b"))
    assert result.verdict is Verdict.DENY


def test_plugin_refuses_to_start_with_a_broken_file(
    tmp_path: Path, flat_file: type[Plugin]
) -> None:
    (tmp_path / "auth_users").write_text("alice:plaintext\n")
    with pytest.raises(PluginError, match=r"auth_users, line 1: the entry for 'alice'"):
        make_plugin(flat_file, name="auth.flat_file", config_dir=tmp_path)


async def test_plugin_reads_the_file_again(
    tmp_path: Path,
    flat_file: type[Plugin],
    mock_clock: trio.testing.MockClock,
    logs: list[logging.LogRecord],
) -> None:
    users_file = tmp_path / "auth_users"
    set_password(users_file, "alice", "first")
    plugin = make_plugin(flat_file, name="auth.flat_file", config_dir=tmp_path)
    conn = make_connection()

    async def verdict(user: str, password: str) -> Verdict:
        return (
            await call_hook(plugin, hooks.auth, conn, Credentials("PLAIN", user, password))
        ).verdict

    assert await verdict("alice", "first") is Verdict.OK
    set_password(users_file, "alice", "second")
    set_password(users_file, "bob", "bobpw")
    # Within a second of the last look the old list is still used ...
    mock_clock.jump(0.9)
    assert await verdict("alice", "first") is Verdict.OK
    # ... after it, the new one.
    mock_clock.jump(0.1)
    assert await verdict("alice", "first") is Verdict.DENY
    assert await verdict("alice", "second") is Verdict.OK
    assert await verdict("bob", "bobpw") is Verdict.OK

    # A broken edit keeps the users read before, and says so once.
    text = users_file.read_text()
    users_file.write_text(text + "carol:plaintext\n")
    for _ in range(3):
        mock_clock.jump(1)
        assert await verdict("alice", "second") is Verdict.OK
        assert await verdict("carol", "plaintext") is Verdict.DENY
    errors = messages(logs, Level.ERROR)
    assert len(errors) == 1 and "keeping 2 user(s) read before" in errors[0]
    assert "plaintext" not in errors[0]

    # Removing the file removes every user.
    users_file.unlink()
    mock_clock.jump(1)
    assert await verdict("alice", "second") is Verdict.DENY
    set_password(users_file, "alice", "third")
    mock_clock.jump(1)
    assert await verdict("alice", "third") is Verdict.OK


def test_example_users_file() -> None:
    example = Path(__file__).resolve().parent.parent / "config" / "auth_users.example"
    users = read_users(example)
    assert list(users) == ["alice"]
    assert verify_password("change-me", users["alice"])
