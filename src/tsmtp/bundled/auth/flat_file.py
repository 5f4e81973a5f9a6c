"""Check AUTH credentials against ``config/auth_users``: one ``username:hash`` a line.

Write the file with ``tsmtp passwd --file config/auth_users USERNAME``; plain-text passwords
are refused. The file is read again when it changes (checked at most once a second). A missing
file means no users. A wrong password, an unknown user, or an authorization identity other than
the user name is refused with 535; the scrypt check runs in a worker thread.
"""

from __future__ import annotations

import functools
import os
import secrets
import stat
import time
from typing import ClassVar

import trio

from tsmtp import (
    Connection,
    Credentials,
    Outcome,
    Plugin,
    PluginConfig,
    Verdict,
    hash_password,
    override,
    read_users,
    verify_password,
)


class FlatFileConfig(PluginConfig, kw_only=True, frozen=True):
    #: The users file, relative to the config directory.
    file: str = "auth_users"


#: The reply to every refused AUTH, whatever the reason (so it tells nothing about users).
INVALID = Verdict.DENY("5.7.8 Authentication credentials invalid")


@functools.cache
def _decoy_hash() -> str:
    """A hash no password matches, checked for unknown users so they take as long as known."""
    return hash_password(secrets.token_urlsafe(32))


def _check(password: str, encoded: str | None) -> bool:
    if encoded is None:
        verify_password(password, _decoy_hash())
        return False
    return verify_password(password, encoded)


class FlatFile(Plugin):
    config: FlatFileConfig

    #: Seconds between checks whether the users file changed.
    reload_interval: ClassVar[float] = 1.0
    #: Password checks running at once (scrypt takes 16 MiB and some CPU each).
    max_concurrent_checks: ClassVar[int] = 4

    @override
    def register(self) -> None:
        self._users: dict[str, str] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = time.monotonic()
        self._limiter: trio.CapacityLimiter | None = None
        self._reload(initial=True)

    def _reload(self, *, initial: bool = False) -> None:
        path = self.config_file(self.config.file)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if initial or self._stamp is not None:
                self.logwarn(f"{path} does not exist: no user can authenticate")
            self._users, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            users = read_users(path)
        except (OSError, ValueError) as exc:
            if initial:
                raise  # a broken users file stops the server from starting
            self._stamp = stamp  # complain once per change, not at every check
            self.logerror(f"{exc}; keeping the {len(self._users)} user(s) read before")
            return
        self._users, self._stamp = users, stamp
        if stat.S_IMODE(st.st_mode) & 0o077:
            self.logwarn(f"{path} can be read by other users; chmod 600 it")
        self.loginfo(f"{len(users)} user(s) from {path}")

    @property
    def users(self) -> dict[str, str]:
        """The users and their hashes, read again if the file changed."""
        now = time.monotonic()
        if now - self._checked >= self.reload_interval:
            self._checked = now
            self._reload()
        return self._users

    @override
    async def hook_auth(self, connection: Connection, credentials: Credentials) -> Outcome:
        username = credentials.username
        if credentials.authzid and credentials.authzid != username:
            self.lognotice(
                f"AUTH {credentials.mechanism} refused: user {username!r} "
                f"may not act as {credentials.authzid!r}",
                connection,
            )
            return INVALID
        encoded = self.users.get(username)
        if self._limiter is None:
            self._limiter = trio.CapacityLimiter(self.max_concurrent_checks)
        valid = await trio.to_thread.run_sync(
            _check, credentials.password, encoded, limiter=self._limiter
        )
        if not valid:
            reason = "unknown user" if encoded is None else "wrong password"
            self.lognotice(
                f"AUTH {credentials.mechanism} failed for {username!r}: {reason}", connection
            )
            return INVALID
        self.loginfo(f"AUTH {credentials.mechanism} succeeded for {username!r}", connection)
        return Verdict.OK
