"""Check AUTH credentials against ``config/auth_users``: one ``username:hash`` a line.

Write the file with ``tsmtp passwd --file config/auth_users USERNAME``; plain-text passwords
are refused. The file is read again when it changes (checked at most once a second). A missing
file means no users. A wrong password, an unknown user, or an authorization identity other than
the user name is refused with 535; the scrypt check runs in a worker thread.
"""

from __future__ import annotations

import functools
import secrets
from typing import ClassVar

import trio

from tsmtp import (
    Connection,
    Credentials,
    DataFile,
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

    #: Password checks running at once (scrypt takes 16 MiB and some CPU each).
    max_concurrent_checks: ClassVar[int] = 4

    @override
    def register(self) -> None:
        # A broken users file raises here, which stops the server from starting.
        self.users_file: DataFile[dict[str, str]] = DataFile(
            self,
            self.config.file,
            read_users,
            missing={},
            describe=lambda users: f"{len(users)} user(s)",
            private=True,
        )
        self._limiter: trio.CapacityLimiter | None = None

    @property
    def users(self) -> dict[str, str]:
        """The users and their hashes, read again if the file changed."""
        return self.users_file.value

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
