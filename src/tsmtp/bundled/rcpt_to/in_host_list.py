"""Accept recipients whose domain is listed in ``config/host_list`` (one domain a line).

Recipients in other domains are left to other plugins (CONT), so a relaying client can still
send to them. The list is read again when the file changes.
"""

from __future__ import annotations

import os
import time

from tsmtp import (
    Address,
    Connection,
    Outcome,
    Plugin,
    PluginConfig,
    RcptParams,
    Verdict,
    override,
)


class InHostListConfig(PluginConfig, kw_only=True, frozen=True):
    #: The file with the domains, relative to the config directory.
    file: str = "host_list"


def normalize_domain(domain: str) -> str:
    domain = domain.strip().rstrip(".").lower()
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


class InHostList(Plugin):
    config: InHostListConfig

    @override
    def register(self) -> None:
        self._domains: frozenset[str] = frozenset()
        self._mtime: float | None = None
        self._checked = 0.0
        self._reload()

    def _reload(self) -> None:
        path = self.config_file(self.config.file)
        try:
            mtime = os.stat(path).st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime and self._mtime is not None:
            return
        self._mtime = mtime
        lines = path.read_text("utf-8").splitlines() if mtime is not None else []
        domains = {normalize_domain(line.split("#", 1)[0]) for line in lines}
        self._domains = frozenset(d for d in domains if d)
        self.loginfo(f"{len(self._domains)} domain(s) from {path}")

    @property
    def domains(self) -> frozenset[str]:
        now = time.monotonic()
        if now - self._checked > 1.0:
            self._checked = now
            self._reload()
        return self._domains

    @override
    async def hook_rcpt(
        self, connection: Connection, recipient: Address, params: RcptParams
    ) -> Outcome:
        if recipient.domain and normalize_domain(recipient.domain) in self.domains:
            return Verdict.OK
        return Verdict.CONT
