"""Loading plugins and config: every mistake is refused with the file, the line or key, and why."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tsmtp import ServerContext
from tsmtp.config import ConfigError, load_server_config
from tsmtp.loader import PluginError, load_plugins
from tsmtp.testing import test_config

REPO = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, plugins: str, files: dict[str, str]) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    (config / "plugins").write_text(plugins)
    (config / "smtp.toml").write_text('[plugins]\nsearch_path = ["../myplugins"]\n')
    mine = tmp_path / "myplugins"
    mine.mkdir()
    for name, text in files.items():
        path = mine / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return config


def load(config: Path) -> list[str]:
    context = ServerContext(load_server_config(config))
    return [p.name for p in load_plugins(config, context)]


GOOD = """
    from tsmtp import Connection, Outcome, Plugin, Verdict, override, Transaction

    class Good(Plugin):
        @override
        async def hook_queue(self, connection: Connection, transaction: Transaction) -> Outcome:
            return Verdict.OK
"""


def test_plugins_load_from_search_path_and_bundled_dir(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, "# comment\nmine.good\n\nrcpt_to.in_host_list  # inline\n", {"mine/good.py": GOOD}
    )
    assert load(config) == ["mine.good", "rcpt_to.in_host_list"]


@pytest.mark.parametrize(
    ("source", "line", "expected"),
    [
        (
            """
            from tsmtp import Connection, Plugin

            class P(Plugin):
                async def hook_rcp(self, connection: Connection) -> None:
                    pass
            """,
            5,
            "unknown hook 'hook_rcp'; did you mean hook_rcpt?",
        ),
        (
            """
            from tsmtp import Connection, Plugin

            class P(Plugin):
                def hook_queue(self, connection: Connection) -> None:  # type: ignore
                    pass
            """,
            5,
            "hook_queue must be async def hook_queue(self, connection: Connection, "
            "transaction: Transaction) -> Outcome",
        ),
        (
            """
            from tsmtp import Connection, Plugin

            class P(Plugin):
                async def hook_rcpt(self, connection: Connection) -> None:  # type: ignore
                    pass
            """,
            5,
            "hook_rcpt has the wrong parameters; expected async def hook_rcpt(self, "
            "connection: Connection, recipient: Address, params: RcptParams) -> Outcome",
        ),
    ],
)
def test_wrong_hooks_are_refused_with_file_line_and_signature(
    tmp_path: Path, source: str, line: int, expected: str
) -> None:
    config = write_config(tmp_path, "bad\n", {"bad.py": source})
    with pytest.raises(PluginError) as info:
        load(config)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'myplugins' / 'bad.py'}:{line}: plugin 'bad': ")
    assert expected in message


def test_registered_handler_must_be_async_and_well_shaped(tmp_path: Path) -> None:
    source = """
        from tsmtp import Connection, Plugin, hooks, Transaction

        class P(Plugin):
            def register(self) -> None:
                hooks.queue.register(self, self.store)

            def store(self, connection: Connection, transaction: Transaction) -> None:
                pass
    """
    config = write_config(tmp_path, "bad\n", {"bad.py": source})
    with pytest.raises(PluginError, match=r"bad\.py:8: .*handler for 'queue' must be an async"):
        load(config)


@pytest.mark.parametrize(
    ("plugins", "files", "expected"),
    [
        ("nothere\n", {}, "plugin 'nothere' not found in"),
        (
            "two\n",
            {"two.py": GOOD + GOOD.replace("Good", "Other")},
            r"defines 2 plugin classes \(Good, Other\); say which one to load with __plugin__",
        ),
        ("broken\n", {"broken.py": "raise ValueError('oops')\n"}, "failed to import: ValueError"),
        ("mine.good\nmine.good\n", {"mine/good.py": GOOD}, "listed twice"),
        ("bad name!\n", {}, "not a valid plugin name"),
    ],
)
def test_plugin_list_problems(
    tmp_path: Path, plugins: str, files: dict[str, str], expected: str
) -> None:
    config = write_config(tmp_path, plugins, files)
    with pytest.raises(PluginError, match=expected):
        load(config)


def test_plugin_config_errors_name_file_and_key(tmp_path: Path) -> None:
    config = write_config(tmp_path, "queue.maildir\n", {})
    (config / "queue.maildir.toml").write_text('path = "x"\nfsync = "sometimes"\n')
    with pytest.raises(ConfigError) as info:
        load(config)
    assert str(info.value) == f"{config / 'queue.maildir.toml'}: fsync: Expected `bool`, got `str`"
    (config / "queue.maildir.toml").write_text('path = "x"\nfsnyc = true\n')
    with pytest.raises(ConfigError, match="unknown field `fsnyc`"):
        load(config)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[limits]\nmax_recipients = 'many'\n", "limits.max_recipients: Expected `int`, got `str`"),
        ("[limits]\nmax_recipients = 0\n", "limits.max_recipients: Expected `int` >= 1"),
        ("[[listen]]\naddress = 'localhost'\n", "expected HOST:PORT"),
        ("[data]\nbare_line_endings = 'accept'\n", "data.bare_line_endings: Invalid enum value"),
        ("hostnme = 'x'\n", "unknown field `hostnme`"),
        ("[limits\n", "not valid TOML"),
    ],
)
def test_server_config_errors(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "smtp.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_server_config(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'smtp.toml'}: ")
    assert expected in str(info.value)


def test_defaults_are_safe() -> None:
    config = test_config()
    assert config.limits.max_recipients == 100
    assert config.data.bare_line_endings == "reject"
    assert config.limits.command_timeout >= 300


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tsmtp", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_command_accepts_the_bundled_config(tmp_path: Path) -> None:
    done = run_cli("check", "--config", str(REPO / "config"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "configuration OK" in done.stdout
    assert "rcpt_to.in_host_list" in done.stdout


def test_check_command_reports_a_broken_config_precisely(tmp_path: Path) -> None:
    config = write_config(tmp_path, "rcpt_to.in_host_list\n", {})
    (config / "smtp.toml").write_text("[limits]\nmax_message_size = -5\n")
    done = run_cli("check", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"tsmtp: {config / 'smtp.toml'}: limits.max_message_size: Expected `int` >= 1"
    )


def test_plugins_from_installed_packages_via_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tsmtp_hello_plugin.py").write_text(textwrap.dedent(GOOD).replace("Good", "Hello"))
    dist = tmp_path / "tsmtp_hello_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tsmtp-hello-plugin\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[tsmtp.plugins]\nhello.world = tsmtp_hello_plugin:Hello\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = write_config(tmp_path, "hello.world\n", {})
    assert load(config) == ["hello.world"]
