"""Salted password hashes for SMTP AUTH, the users file, and ``tsmtp passwd``.

A hash is a self-describing string, so the parameters can be raised later without breaking the
entries already written::

    scrypt$<n>$<r>$<p>$<salt, base64>$<key, base64>

The users file has one ``username:hash`` a line; blank lines and lines starting with ``#`` are
ignored. Anything else, a plain-text password in particular, is refused by :func:`read_users`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import getpass
import hashlib
import hmac
import os
import secrets
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_USERS_FILE",
    "SCRYPT_N",
    "SCRYPT_P",
    "SCRYPT_R",
    "hash_password",
    "is_password_hash",
    "passwd_main",
    "read_users",
    "set_password",
    "validate_username",
    "verify_password",
]

#: The scheme name, the first field of every hash.
SCHEME = "scrypt"
#: scrypt's CPU/memory cost (a power of two); with ``r = 8`` it takes 16 MiB per hash.
SCRYPT_N = 2**14
#: scrypt's block size.
SCRYPT_R = 8
#: scrypt's parallelism.
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
#: Where ``tsmtp passwd`` writes when not given ``--file``.
DEFAULT_USERS_FILE = "config/auth_users"

# Bounds on what a stored hash may ask for, so a bad entry cannot make verification eat
# gigabytes of memory or hours of CPU.
_MAX_N = 2**20
_MAX_R = 32
_MAX_P = 16
_MAX_MEMORY = 128 * 1024 * 1024
_MIN_SALT, _MAX_SALT = 8, 64
_MIN_KEY, _MAX_KEY = 16, 64


@dataclass(frozen=True, slots=True)
class _Scrypt:
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def derive(self, password: str) -> bytes:
        return _scrypt(password, self.salt, self.n, self.r, self.p, len(self.key))


def _memory(n: int, r: int, p: int) -> int:
    """About what OpenSSL's scrypt allocates (its default limit, 32 MiB, is too low for some)."""
    return 128 * r * (n + p + 2)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    maxmem = _memory(n, r, p) + 1024 * 1024
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=length
    )


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("not base64")
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64") from exc


def _decimal(text: str) -> int:
    # int() alone would accept "+8", " 8", "8_0" and non-ASCII digits.
    if not (text.isascii() and text.isdigit()) or (len(text) > 1 and text[0] == "0"):
        raise ValueError(f"{text!r} is not a number")
    return int(text)


def _parse(encoded: str) -> _Scrypt:
    """The parameters of ``encoded``, or ValueError saying what is wrong with it."""
    fields = encoded.split("$")
    if len(fields) != 6 or fields[0] != SCHEME:
        raise ValueError(f"not a password hash (expected {SCHEME}$n$r$p$salt$key)")
    n, r, p = (_decimal(f) for f in fields[1:4])
    if not 2 <= n <= _MAX_N or n & (n - 1):
        raise ValueError(f"scrypt n={n} is not a power of two between 2 and {_MAX_N}")
    if not 1 <= r <= _MAX_R:
        raise ValueError(f"scrypt r={r} is not between 1 and {_MAX_R}")
    if not 1 <= p <= _MAX_P:
        raise ValueError(f"scrypt p={p} is not between 1 and {_MAX_P}")
    if _memory(n, r, p) > _MAX_MEMORY:
        raise ValueError(f"scrypt n={n}, r={r} would need more than {_MAX_MEMORY >> 20} MiB")
    salt, key = _b64decode(fields[4]), _b64decode(fields[5])
    if not _MIN_SALT <= len(salt) <= _MAX_SALT:
        raise ValueError(f"salt of {len(salt)} bytes (must be {_MIN_SALT} to {_MAX_SALT})")
    if not _MIN_KEY <= len(key) <= _MAX_KEY:
        raise ValueError(f"hash of {len(key)} bytes (must be {_MIN_KEY} to {_MAX_KEY})")
    return _Scrypt(n, r, p, salt, key)


def is_password_hash(encoded: str) -> bool:
    """True if ``encoded`` is a hash this module can verify (never a plain-text password)."""
    try:
        _parse(encoded)
    except ValueError:
        return False
    return True


def hash_password(password: str) -> str:
    """A new salted scrypt hash of ``password``; hashing the same password twice differs."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES)
    return "$".join(
        [SCHEME, str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64encode(salt), _b64encode(key)]
    )


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches the hash ``encoded``.

    The comparison takes constant time. A malformed ``encoded`` (or a password that cannot be
    encoded as UTF-8) gives False; this function never raises for bad input.
    """
    try:
        stored = _parse(encoded)
        derived = stored.derive(password)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(derived, stored.key)


def validate_username(username: str) -> None:
    """Raise ValueError unless ``username`` can be stored in a users file."""
    if not username:
        raise ValueError("the user name is empty")
    if ":" in username:
        raise ValueError(f"user name {username!r} contains ':'")
    if any(c.isspace() or not c.isprintable() for c in username):
        raise ValueError(f"user name {username!r} contains whitespace or control characters")
    if username.startswith("#"):
        raise ValueError(f"user name {username!r} starts with '#'")


def _entry_name(line: str) -> str | None:
    """The user name of a users-file line, or None for a blank line or a comment."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    return text.split(":", 1)[0] if ":" in text else text


def read_users(path: str | os.PathLike[str]) -> dict[str, str]:
    """The users in ``path``, as ``{username: hash}``.

    Raises ValueError naming the file and line for a line that is not ``username:hash`` with a
    recognised hash (so a plain-text password is never accepted) and for a user listed twice;
    OSError (FileNotFoundError for a missing file) if it cannot be read.
    """
    try:
        text = Path(path).read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{os.fspath(path)}: not UTF-8 text: {exc}") from exc
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{os.fspath(path)}, line {number}"
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        username, colon, encoded = entry.partition(":")
        if not colon:
            raise ValueError(f"{where}: expected 'username:hash', found no ':'")
        try:
            validate_username(username)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        try:
            _parse(encoded)
        except ValueError as exc:
            # Deliberately does not quote the value: it may be a plain-text password.
            raise ValueError(
                f"{where}: the entry for {username!r} is {exc}; "
                "set the password with 'tsmtp passwd'"
            ) from None
        if username in users:
            raise ValueError(f"{where}: user {username!r} is listed twice")
        users[username] = encoded
    return users


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, text: str, like: os.stat_result | None) -> None:
    """Replace ``path`` with ``text``: temp file in the same directory, fsync, rename.

    A new file gets mode 0600; an existing one keeps its mode (and owner, if allowed).
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            if like is None:
                os.fchmod(f.fileno(), 0o600)
            else:
                os.fchmod(f.fileno(), like.st_mode & 0o7777)
                if (like.st_uid, like.st_gid) != (os.getuid(), os.getgid()):
                    with contextlib.suppress(PermissionError):
                        os.fchown(f.fileno(), like.st_uid, like.st_gid)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def set_password(path: str | os.PathLike[str], username: str, password: str) -> None:
    """Add ``username`` to the users file ``path``, or replace its password.

    Every other line, comments included, is kept as it was. The file is replaced atomically;
    it is created with mode 0600 if it does not exist. Raises ValueError for an unusable user
    name or an empty password, OSError if the file cannot be written.
    """
    validate_username(username)
    if not password:
        raise ValueError("the password is empty")
    target = Path(os.path.realpath(path))
    try:
        old = target.read_text("utf-8")
        like: os.stat_result | None = target.stat()
    except FileNotFoundError:
        old, like = "", None
    new_line = f"{username}:{hash_password(password)}\n"
    lines: list[str] = []
    replaced = False
    for line in old.splitlines(keepends=True):
        if _entry_name(line) != username:
            lines.append(line)
        elif not replaced:
            lines.append(new_line)
            replaced = True
        # A second entry for the same user is dropped.
    if not replaced:
        if lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += "\n"
        lines.append(new_line)
    _write_atomically(target, "".join(lines), like)


def _passwd_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tsmtp passwd",
        description="Set a user's SMTP AUTH password in a users file (created if missing).",
    )
    parser.add_argument(
        "--file",
        type=Path,
        default=Path(DEFAULT_USERS_FILE),
        metavar="PATH",
        help=f"the users file (default: {DEFAULT_USERS_FILE})",
    )
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of prompting",
    )
    parser.add_argument("username", help="the user name (no ':' and no whitespace)")
    return parser


class _Abort(Exception):
    pass


def _read_password(username: str, from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise _Abort("no password on standard input")
        password = line.removesuffix("\n").removesuffix("\r")
    else:
        try:
            password = getpass.getpass(f"Password for {username}: ")
            again = getpass.getpass("Retype password: ")
        except EOFError:
            raise _Abort("no password given") from None
        if password != again:
            raise _Abort("the passwords do not match")
    if not password:
        raise _Abort("the password is empty")
    return password


def passwd_main(argv: Sequence[str] | None = None) -> int:
    """``tsmtp passwd [--file PATH] [--password-stdin] USERNAME``; returns the exit status.

    0 when the password was set; 2, with a message on stderr, for any error.
    """
    try:
        args = _passwd_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has already printed the usage or --help
        return exc.code if isinstance(exc.code, int) else 2
    try:
        validate_username(args.username)
        password = _read_password(args.username, args.password_stdin)
        set_password(args.file, args.username, password)
    except (ValueError, _Abort) as exc:
        print(f"tsmtp passwd: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"tsmtp passwd: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"password set for {args.username} in {args.file}")
    return 0
