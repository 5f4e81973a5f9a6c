"""Plugins are ordinary Python modules: the bundled ones are entry points of the tsmtp
distribution, a search-path directory is a package of its own, each module is imported once,
and a module says which of its classes is the plugin."""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from importlib.metadata import distribution
from pathlib import Path

import pytest
import trio

import tsmtp.bundled
from tsmtp import Plugin, PluginSpec, Server, ServerContext
from tsmtp.bundled.queue.discard import Discard
from tsmtp.bundled.rdns import NAMES
from tsmtp.config import DNSSettings, PluginSettings, load_server_config, read_list
from tsmtp.loader import (
    ENTRY_POINT_GROUP,
    PluginError,
    check_plugin_class,
    find_plugin_class,
    load_plugins,
    plugin_search_path,
)
from tsmtp.testing import SMTPClient, test_config

from .dnsserver import dns_server

REPO = Path(__file__).resolve().parent.parent


def write_files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def fresh_modules() -> Iterator[None]:
    """Forget the plugin modules a test imported, so the next test imports its own files."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("tsmtp_"):  # the site packages and made-up distributions here
            del sys.modules[name]


def install_distribution(
    root: Path, dist: str, entry_points: dict[str, str], files: dict[str, str]
) -> None:
    """Make ``root`` hold an installed distribution: its metadata and its modules."""
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"  # "-" ends the name here
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")
    write_files(root, files)


PLUGIN = textwrap.dedent("""
    from tsmtp import Connection, Outcome, Plugin, Verdict, override, Transaction

    class {name}(Plugin):
        @override
        async def hook_queue(self, connection: Connection, transaction: Transaction) -> Outcome:
            return Verdict.OK
""")


# --- the bundled plugins ----------------------------------------------------------------------


def bundled_modules() -> set[str]:
    """The modules of tsmtp.bundled that define a plugin class."""
    found = set()
    for info in pkgutil.walk_packages(tsmtp.bundled.__path__, "tsmtp.bundled."):
        module = importlib.import_module(info.name)
        if any(
            isinstance(obj, type) and issubclass(obj, Plugin) and obj.__module__ == info.name
            for obj in vars(module).values()
        ):
            found.add(info.name)
    return found


def test_bundled_plugins_are_the_entry_points_of_tsmtp() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"][
        ENTRY_POINT_GROUP
    ]
    installed = {
        ep.name: ep.value
        for ep in distribution("tsmtp").entry_points
        if ep.group == ENTRY_POINT_GROUP
    }
    # A stale editable install (pyproject.toml changed, pip install -e not re-run) fails here.
    assert installed == declared
    assert {value.split(":")[0] for value in declared.values()} == bundled_modules()
    for name, value in declared.items():
        module_name, _, attr = value.partition(":")
        cls = find_plugin_class(name, [])
        assert cls is getattr(importlib.import_module(module_name), attr)
        check_plugin_class(cls, name)


@pytest.mark.parametrize("config_dir", [REPO / "config", REPO / "examples" / "submission"])
def test_shipped_plugin_lists_resolve(config_dir: Path) -> None:
    config = load_server_config(config_dir)
    search = plugin_search_path(config_dir, config.plugins.search_path)
    for name in read_list(config_dir / "plugins"):
        assert find_plugin_class(name, search).__module__.startswith("tsmtp.bundled.")


def test_without_tsmtp_entry_points_the_error_says_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("tsmtp.loader.entry_points", lambda **_: ())
    with pytest.raises(PluginError) as info:
        find_plugin_class("queue.maildir", [])
    assert str(info.value) == (
        "plugin 'queue.maildir' not found in the entry point group 'tsmtp.plugins'; "
        "tsmtp's own plugins are missing from it too: install tsmtp (pip install -e . in a "
        "checkout) instead of running it from the source tree"
    )


# --- one module, one class --------------------------------------------------------------------


def test_loading_a_plugin_twice_gives_the_same_class(tmp_path: Path, fresh_modules: None) -> None:
    assert find_plugin_class("queue.discard", []) is find_plugin_class("queue.discard", [])
    assert find_plugin_class("queue.discard", []) is Discard

    site = write_files(tmp_path / "site", {"mine/store.py": PLUGIN.format(name="Store")})
    first = find_plugin_class("mine.store", [site])
    assert find_plugin_class("mine.store", [site]) is first
    assert first.__module__.startswith("tsmtp_site_site_")
    assert sys.modules[first.__module__].__file__ == str(site / "mine" / "store.py")

    config = tmp_path / "config"
    config.mkdir()
    (config / "plugins").write_text("mine.store\nqueue.discard\n")
    (config / "smtp.toml").write_text('[plugins]\nsearch_path = ["../site"]\n')
    for _ in range(2):
        loaded = load_plugins(config, ServerContext(load_server_config(config)))
        assert [type(p) for p in loaded] == [first, Discard]


def test_a_search_path_file_replaces_a_bundled_plugin(tmp_path: Path, fresh_modules: None) -> None:
    site = write_files(tmp_path / "site", {"queue/discard.py": PLUGIN.format(name="MyDiscard")})
    assert find_plugin_class("queue.discard", [site]).__name__ == "MyDiscard"
    assert find_plugin_class("queue.discard", []) is Discard


SIBLINGS = {
    "__init__.py": """
        MARKER = object()
    """,
    "json.py": """
        VALUE = "the site's own json module"
    """,
    "stamp.py": """
        from dataclasses import dataclass

        from tsmtp import Connection, NoteKey, Outcome, Plugin, override

        @dataclass
        class Stamp:
            text: str

        #: Owned by this plugin; others import it from here.
        STAMP = NoteKey("stamp.stamp", Stamp)

        class SetStamp(Plugin):
            @override
            async def hook_connect(self, connection: Connection) -> Outcome:
                connection.notes.set(STAMP, Stamp("from the stamp plugin"))
                return None
    """,
    "check/reader.py": """
        from tsmtp import Connection, Outcome, Plugin, Verdict, override
        from tsmtp.bundled.rdns import NAMES

        from .. import MARKER, json
        from ..stamp import STAMP

        class Reader(Plugin):
            @override
            async def hook_ehlo(self, connection: Connection, hostname: str) -> Outcome:
                stamp = connection.notes.find(STAMP)
                names = connection.notes.find(NAMES)
                return Verdict.DENY(
                    f"stamp={stamp.text if stamp else None} rdns={names} json={json.VALUE}"
                )
    """,
}


def test_plugin_modules_import_their_siblings_without_touching_sys_path(
    tmp_path: Path, fresh_modules: None
) -> None:
    site = write_files(tmp_path / "site", SIBLINGS)
    path_before = list(sys.path)
    reader = find_plugin_class("check.reader", [site])
    stamp = find_plugin_class("stamp", [site])
    assert sys.path == path_before
    assert sys.modules["json"] is json  # the site's json.py shadows nothing
    reader_module = sys.modules[reader.__module__]
    package = sys.modules[reader.__module__.split(".")[0]]
    assert vars(reader_module)["json"].VALUE == "the site's own json module"
    assert vars(reader_module)["MARKER"] is vars(package)["MARKER"]
    assert vars(reader_module)["STAMP"] is vars(sys.modules[stamp.__module__])["STAMP"]
    assert vars(reader_module)["NAMES"] is NAMES


async def test_a_plugin_finds_the_notes_of_plugins_whose_key_it_imports(
    tmp_path: Path, fresh_modules: None
) -> None:
    """stamp (a site plugin) and rdns (bundled) set notes; check.reader finds both with the
    keys it imports from their modules, so the classes the notes hold are the same."""
    write_files(tmp_path / "site", SIBLINGS)
    records = {
        ("1.0.0.127.in-addr.arpa.", "PTR"): ["client.test."],
        ("client.test.", "A"): ["127.0.0.1"],
    }
    async with dns_server(records) as port:
        config = test_config(
            dns=DNSSettings(nameservers=["127.0.0.1"], port=port, timeout=2),
            plugins=PluginSettings(search_path=["site"]),
        )
        plugins = [PluginSpec(name) for name in ("rdns", "stamp", "check.reader")]
        server = Server(config, plugins, config_dir=tmp_path)
        async with trio.open_nursery() as nursery:
            [(host, server_port)] = await nursery.start(server.serve)
            client = await SMTPClient.connect(host, server_port)
            reply = await client.command("EHLO client.test")
            await client.aclose()
            nursery.cancel_scope.cancel()
    assert reply.code == 550
    assert reply.text.endswith(
        "stamp=from the stamp plugin rdns=['client.test'] json=the site's own json module"
    )


def test_absolute_import_of_a_sibling_is_explained(tmp_path: Path, fresh_modules: None) -> None:
    site = write_files(
        tmp_path / "site",
        {"helpers.py": "X = 1\n", "plug.py": "import helpers\n" + PLUGIN.format(name="P")},
    )
    with pytest.raises(PluginError) as info:
        find_plugin_class("plug", [site])
    assert str(info.value) == (
        f"{site / 'plug.py'}: plugin 'plug' failed to import: "
        "ModuleNotFoundError(\"No module named 'helpers'\"); "
        "import modules of the plugin directory relatively: from . import helpers"
    )


def test_a_failing_init_of_a_plugin_directory_names_it(tmp_path: Path, fresh_modules: None) -> None:
    site = write_files(
        tmp_path / "site",
        {"__init__.py": "raise RuntimeError('no')\n", "plug.py": PLUGIN.format(name="P")},
    )
    with pytest.raises(PluginError) as info:
        find_plugin_class("plug", [site])
    assert str(info.value) == f"{site / '__init__.py'}: failed to import: RuntimeError('no')"
    (site / "__init__.py").write_text("")
    assert find_plugin_class("plug", [site]).__name__ == "P"


def test_a_flat_dotted_file_imports_its_siblings(tmp_path: Path, fresh_modules: None) -> None:
    flat = "from .shared import NAME\n" + PLUGIN.format(name="Flat")
    site = write_files(tmp_path / "site", {"shared.py": "NAME = 'shared'\n", "my.flat.py": flat})
    cls = find_plugin_class("my.flat", [site])
    assert vars(sys.modules[cls.__module__])["NAME"] == "shared"
    assert find_plugin_class("my.flat", [site]) is cls


# --- which class is the plugin ----------------------------------------------------------------


BASE_AND_PLUGIN = """
    from tsmtp import Connection, Outcome, Plugin, Verdict, override

    class ListBase(Plugin):
        def allowed(self, name: str) -> bool:
            return name in self.names()

        def names(self) -> set[str]:
            raise NotImplementedError

    class Allow(ListBase):
        @override
        def names(self) -> set[str]:
            return {"a"}
"""

IMPORTED_ONLY = """
    from tsmtp.bundled.queue.discard import Discard
"""

SUBCLASS_OF_IMPORTED = """
    from tsmtp.bundled.queue.discard import Discard

    class LoudDiscard(Discard):
        pass
"""

CHOSEN = PLUGIN.format(name="First") + PLUGIN.format(name="Second") + "\n__plugin__ = Second\n"


@pytest.mark.parametrize(
    ("source", "expected"),
    [(BASE_AND_PLUGIN, "Allow"), (SUBCLASS_OF_IMPORTED, "LoudDiscard"), (CHOSEN, "Second")],
)
def test_the_plugin_class_of_a_module(
    tmp_path: Path, fresh_modules: None, source: str, expected: str
) -> None:
    site = write_files(tmp_path / "site", {"plug.py": source})
    assert find_plugin_class("plug", [site]).__name__ == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (IMPORTED_ONLY, "defines no Plugin subclass"),
        (
            PLUGIN.format(name="First") + PLUGIN.format(name="Second"),
            "defines 2 plugin classes (First, Second); "
            "say which one to load with __plugin__ = First",
        ),
        (PLUGIN.format(name="First") + "\n__plugin__ = 3\n", "__plugin__ is 3, not a Plugin"),
    ],
)
def test_a_module_without_one_plugin_class_is_refused(
    tmp_path: Path, fresh_modules: None, source: str, expected: str
) -> None:
    site = write_files(tmp_path / "site", {"plug.py": source})
    with pytest.raises(PluginError) as info:
        find_plugin_class("plug", [site])
    assert str(info.value).startswith(f"{site / 'plug.py'}: plugin 'plug'")
    assert expected in str(info.value)


# --- third-party entry points -----------------------------------------------------------------


def test_a_third_party_entry_point_loads_like_a_bundled_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_modules: None
) -> None:
    install_distribution(
        tmp_path,
        "tsmtp-allow",
        {"allow.module": "tsmtp_allow.plugin", "allow.class": "tsmtp_allow.plugin:Allow"},
        {"tsmtp_allow/__init__.py": "", "tsmtp_allow/plugin.py": BASE_AND_PLUGIN},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from_module = find_plugin_class("allow.module", [])
    assert from_module.__module__ == "tsmtp_allow.plugin"
    assert find_plugin_class("allow.class", []) is from_module


@pytest.mark.parametrize(
    ("value", "files", "expected"),
    [
        (
            "tsmtp_broken.plugin",
            {"tsmtp_broken/__init__.py": "", "tsmtp_broken/plugin.py": "1 / 0\n"},
            "entry point x = tsmtp_broken.plugin (from tsmtp-broken 1.0): plugin 'x' failed to "
            "import: ZeroDivisionError('division by zero')",
        ),
        (
            "tsmtp_broken:VALUE",
            {"tsmtp_broken/__init__.py": "VALUE = 3\n"},
            "entry point x = tsmtp_broken:VALUE (from tsmtp-broken 1.0): 3 is not a Plugin "
            "subclass",
        ),
        (
            "tsmtp_broken",
            {"tsmtp_broken/__init__.py": ""},
            "entry point x = tsmtp_broken (from tsmtp-broken 1.0): plugin 'x' defines no "
            "Plugin subclass",
        ),
    ],
)
def test_broken_entry_points_are_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fresh_modules: None,
    value: str,
    files: dict[str, str],
    expected: str,
) -> None:
    install_distribution(tmp_path, "tsmtp-broken", {"x": value}, files)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as info:
        find_plugin_class("x", [])
    assert str(info.value) == expected


def test_a_name_claimed_by_two_entry_points_is_refused_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_modules: None
) -> None:
    install_distribution(
        tmp_path / "one", "tsmtp-one", {"queue.discard": "tsmtp_one:Store"}, {"tsmtp_one.py": ""}
    )
    monkeypatch.syspath_prepend(str(tmp_path / "one"))
    with pytest.raises(PluginError) as info:
        find_plugin_class("queue.discard", [])
    message = str(info.value)
    assert message.startswith("plugin 'queue.discard' is claimed by 2 entry points: ")
    assert "queue.discard = tsmtp.bundled.queue.discard:Discard (from tsmtp " in message
    assert "queue.discard = tsmtp_one:Store (from tsmtp-one 1.0)" in message
    assert message.endswith("; uninstall one, or put the one to use in a search_path directory")
    # A search-path directory still decides, before any entry point is consulted.
    site = write_files(tmp_path / "site", {"queue/discard.py": PLUGIN.format(name="Mine")})
    assert find_plugin_class("queue.discard", [site]).__name__ == "Mine"
