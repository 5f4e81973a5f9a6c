"""Finding, importing and checking plugins, and creating them with their config.

A plugin is found by name on the search path (a ``config/`` directory's ``search_path``, then the
bundled plugins), else in the ``tsmtp.plugins`` entry-point group.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import re
import sys
import typing
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from .config import ConfigError, decode_toml, read_list
from .connection import ServerContext
from .plugin import HOOK_NAMES, Plugin, PluginConfig

ENTRY_POINT_GROUP = "tsmtp.plugins"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*\Z")


class PluginError(ConfigError):
    """A plugin that cannot be found, loaded or used, with the reason."""


def bundled_plugin_dir() -> Path:
    """The bundled ``plugins/``: inside the installed package, or next to ``src/`` in a checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "bundled_plugins"
    return packaged if packaged.is_dir() else here.parent.parent / "plugins"


def plugin_search_path(config_dir: Path, extra: Iterable[str]) -> list[Path]:
    return [(config_dir / p).resolve() for p in extra] + [bundled_plugin_dir()]


def _module_file(name: str, directory: Path) -> Path | None:
    parts = name.split(".")
    candidates = [
        directory.joinpath(*parts).with_suffix(".py"),
        directory.joinpath(*parts, "__init__.py"),
        directory / f"{name}.py",
    ]
    return next((c for c in candidates if c.is_file()), None)


def _import_file(name: str, path: Path) -> ModuleType:
    module_name = "tsmtp_plugin_" + re.sub(r"\W", "_", name)
    locations = [str(path.parent)] if path.name == "__init__.py" else None
    spec = importlib.util.spec_from_file_location(
        module_name, path, submodule_search_locations=locations
    )
    if spec is None or spec.loader is None:
        raise PluginError(f"{path}: cannot import plugin {name!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise PluginError(f"{path}: plugin {name!r} failed to import: {exc!r}") from exc
    return module


def _plugin_class_in(module: ModuleType, name: str, where: str) -> type[Plugin]:
    found = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, Plugin)
        and obj is not Plugin
        and obj.__module__ == module.__name__
    ]
    if len(found) != 1:
        what = "no Plugin subclass" if not found else f"{len(found)} Plugin subclasses"
        raise PluginError(f"{where}: plugin {name!r} must define exactly one, found {what}")
    return found[0]


def find_plugin_class(name: str, search_path: Iterable[Path]) -> type[Plugin]:
    """The Plugin subclass for ``name``: from the search path, then from entry points."""
    if _NAME.match(name) is None:
        raise PluginError(f"{name!r} is not a valid plugin name")
    for directory in search_path:
        path = _module_file(name, directory)
        if path is not None:
            return _plugin_class_in(_import_file(name, path), name, str(path))
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            obj = ep.load()
        except Exception as exc:
            raise PluginError(f"entry point {ep.value}: plugin {name!r} failed: {exc!r}") from exc
        if isinstance(obj, ModuleType):
            return _plugin_class_in(obj, name, ep.value)
        if isinstance(obj, type) and issubclass(obj, Plugin):
            return obj
        raise PluginError(f"entry point {ep.value}: {obj!r} is not a Plugin subclass")
    places = ", ".join(str(p) for p in search_path)
    raise PluginError(
        f"plugin {name!r} not found in {places} nor in entry points group {ENTRY_POINT_GROUP!r}"
    )


def _where(fn: object) -> str:
    try:
        target = inspect.unwrap(fn)  # type: ignore[arg-type]
        return f"{inspect.getsourcefile(target)}:{inspect.getsourcelines(target)[1]}"
    except (OSError, TypeError):
        return repr(fn)


def _expected(hook: str) -> str:
    method = getattr(Plugin, f"hook_{hook}")
    signature = str(inspect.signature(method)).replace("'", "").replace(", /", "")
    return f"async def hook_{hook}{signature}"


def _positional_count(fn: Callable[..., object]) -> int | None:
    """How many positional arguments ``fn`` takes; None if it also needs keyword-only ones."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in params):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return -1
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _is_async(fn: object) -> bool:
    call = getattr(fn, "__call__", None)  # noqa: B004 (callable objects with async __call__)
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def check_plugin_class(cls: type[Plugin], name: str) -> None:
    """Refuse unknown ``hook_*`` names, sync hooks and wrong parameter lists, with file:line."""
    for attr in dir(cls):
        if not attr.startswith("hook_"):
            continue
        fn = getattr(cls, attr)
        hook = attr.removeprefix("hook_")
        if hook not in HOOK_NAMES:
            close = difflib.get_close_matches(hook, HOOK_NAMES, n=1)
            hint = f"; did you mean hook_{close[0]}?" if close else ""
            raise PluginError(f"{_where(fn)}: plugin {name!r}: unknown hook {attr!r}{hint}")
        if fn is getattr(Plugin, attr):
            continue
        expected = _expected(hook)
        if not inspect.iscoroutinefunction(fn):
            raise PluginError(f"{_where(fn)}: plugin {name!r}: {attr} must be {expected}")
        want = _positional_count(getattr(Plugin, attr))
        have = _positional_count(fn)
        if have != want and have != -1:
            raise PluginError(
                f"{_where(fn)}: plugin {name!r}: {attr} has the wrong parameters; "
                f"expected {expected}"
            )


def _check_handler(plugin: Plugin, hook: str, handler: Callable[..., object]) -> None:
    if not _is_async(handler):
        raise PluginError(
            f"{_where(handler)}: plugin {plugin.name!r}: "
            f"handler for {hook!r} must be an async function"
        )
    # A custom hook's handlers take what unrecognized_command's do.
    spec = hook if hook in HOOK_NAMES else "unrecognized_command"
    base = _positional_count(getattr(Plugin, f"hook_{spec}"))
    want = (base or 0) - 1
    have = _positional_count(handler)
    if have != want and have != -1:
        raise PluginError(
            f"{_where(handler)}: plugin {plugin.name!r}: handler for {hook!r} must take "
            f"{want} positional arguments, takes {have}"
        )


def config_type_of(cls: type[Plugin]) -> type[PluginConfig]:
    hint = typing.get_type_hints(cls).get("config", PluginConfig)
    if not (isinstance(hint, type) and issubclass(hint, PluginConfig)):
        raise PluginError(
            f"{cls.__qualname__}.config must be annotated with a PluginConfig subclass"
        )
    return hint


def instantiate(
    cls: type[Plugin],
    name: str,
    *,
    config_dir: Path,
    server: ServerContext,
    config: PluginConfig | None = None,
) -> Plugin:
    """Create, configure and register one plugin (``config`` None: read ``<name>.toml``)."""
    check_plugin_class(cls, name)
    if config is None:
        config = decode_toml(config_dir / f"{name}.toml", config_type_of(cls))
    try:
        plugin = cls()
    except TypeError as exc:
        raise PluginError(f"{_where(cls)}: plugin {name!r} cannot be created: {exc}") from exc
    plugin.name = name
    plugin.config = config
    plugin.config_dir = config_dir
    plugin.server = server
    try:
        plugin.register()
    except Exception as exc:
        raise PluginError(
            f"{_where(cls.register)}: plugin {name!r}: register() failed: {exc!r}"
        ) from exc
    for hook, handler, _ in plugin.__dict__.get("_registered_hooks", []):
        _check_handler(plugin, hook, handler)
    return plugin


def load_plugins(config_dir: Path, server: ServerContext) -> list[Plugin]:
    """Load every plugin named in ``config_dir/plugins``."""
    names = read_list(config_dir / "plugins")
    seen: set[str] = set()
    search = plugin_search_path(config_dir, server.config.plugins.search_path)
    plugins = []
    for name in names:
        if name in seen:
            raise PluginError(f"{config_dir / 'plugins'}: plugin {name!r} is listed twice")
        seen.add(name)
        plugins.append(
            instantiate(find_plugin_class(name, search), name, config_dir=config_dir, server=server)
        )
    return plugins
