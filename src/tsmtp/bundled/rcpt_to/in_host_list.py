"""Accept recipients whose domain is listed in ``config/host_list`` (one domain a line).

Recipients in other domains are left to other plugins (CONT), so a relaying client can still
send to them. The list is read again when the file changes.
"""

from __future__ import annotations

from pathlib import Path

from tsmtp import (
    Address,
    Connection,
    DataFile,
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


def read_host_list(path: Path) -> frozenset[str]:
    """The domains of a host list file: one a line, ``#`` starts a comment."""
    lines = path.read_text("utf-8").splitlines()
    domains = {normalize_domain(line.split("#", 1)[0]) for line in lines}
    return frozenset(d for d in domains if d)


class InHostList(Plugin):
    config: InHostListConfig

    @override
    def register(self) -> None:
        self.host_list: DataFile[frozenset[str]] = DataFile(
            self,
            self.config.file,
            read_host_list,
            missing=frozenset(),
            describe=lambda domains: f"{len(domains)} domain(s)",
        )

    @property
    def domains(self) -> frozenset[str]:
        """The domains listed, read again if the file changed."""
        return self.host_list.value

    @override
    async def hook_rcpt(
        self, connection: Connection, recipient: Address, params: RcptParams
    ) -> Outcome:
        if recipient.domain and normalize_domain(recipient.domain) in self.domains:
            return Verdict.OK
        return Verdict.CONT
