"""Finding, importing and checking plugins, and creating them with their config.

Where a plugin name is looked up, in this order:

1. each directory of the config's ``[plugins] search_path``, in the order given, so a site can
   replace any plugin by a file of the same name;
2. the ``tsmtp.plugins`` entry-point group, where tsmtp registers its bundled plugins
   (``tsmtp.bundled.*``) exactly as a third-party package registers its own. A name that two
   entry points claim is an error naming both.

Every plugin module is imported once per process, as an ordinary module under one stable name,
so loading a plugin twice gives the same class, and a plugin importing another plugin's module
(``from tsmtp.bundled.rdns import NAMES``) shares its objects, NoteKeys included. An entry
point's module has its own package name. A search-path directory becomes a package of its own
named ``tsmtp_site_<directory>_<hash of its path>`` (running its ``__init__.py`` if there is
one), and its files are that package's modules: a plugin imports its siblings relatively
(``from . import helpers``, ``from ..shared import KEY``). Nothing is added to ``sys.path``, so a
file in a plugin directory never shadows a standard-library or installed module.

The plugin class of a module is its ``__plugin__`` attribute if it has one, else the one
``Plugin`` subclass defined in the module that no other class defined there subclasses (so a
module may hold base classes for its plugin). Classes it imports do not count.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import re
import sys
import typing
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType

from .config import ConfigError, decode_toml, read_list
from .connection import ServerContext
from .plugin import HOOK_NAMES, Plugin, PluginConfig

ENTRY_POINT_GROUP = "tsmtp.plugins"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*\Z")


class PluginError(ConfigError):
    """A plugin that cannot be found, loaded or used, with the reason."""


def plugin_search_path(config_dir: Path, extra: Iterable[str]) -> list[Path]:
    """The directories of ``search_path`` (relative to ``config_dir``), searched before the
    entry points."""
    return [(config_dir / p).resolve() for p in extra]


def _module_file(name: str, directory: Path) -> tuple[Path, str] | None:
    """The file that defines plugin ``name`` in ``directory``, and its module name there."""
    parts = name.split(".")
    nested = ".".join(parts)
    candidates = [
        # Python's own order: a package before a module of the same name.
        (directory.joinpath(*parts, "__init__.py"), nested),
        (directory.joinpath(*parts).with_suffix(".py"), nested),
        # A flat "a.b.py" is no importable name: ":" keeps it apart from every real module.
        (directory / f"{name}.py", name.replace(".", ":")),
    ]
    return next((c for c in candidates if c[0].is_file()), None)


def _site_package_name(directory: Path) -> str:
    """The package name the plugin files in search-path ``directory`` are imported under."""
    resolved = directory.resolve()
    digest = hashlib.sha256(str(resolved).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    label = re.sub(r"[^A-Za-z0-9_]", "_", resolved.name)
    return f"tsmtp_site_{label}_{digest}"


def _import_site_package(directory: Path) -> str:
    """Import ``directory`` as a package (once) and return its name."""
    package = _site_package_name(directory)
    if package in sys.modules:
        return package
    init = directory / "__init__.py"
    if init.is_file():
        spec = importlib.util.spec_from_file_location(
            package, init, submodule_search_locations=[str(directory)]
        )
    else:
        spec = importlib.machinery.ModuleSpec(package, None, is_package=True)
        spec.submodule_search_locations = [str(directory)]
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    try:
        if spec.loader is not None:
            spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[package]
        raise PluginError(f"{init}: failed to import: {exc!r}") from exc
    return package


def _sibling_hint(exc: BaseException, directory: Path) -> str:
    """A hint for ``import helpers`` written for a module next to the plugin."""
    missing = getattr(exc, "name", None)
    if not isinstance(exc, ModuleNotFoundError) or not missing or "." in missing:
        return ""
    if (directory / f"{missing}.py").is_file() or (directory / missing).is_dir():
        return f"; import modules of the plugin directory relatively: from . import {missing}"
    return ""


def _import_file(name: str, path: Path, module_name: str, directory: Path) -> ModuleType:
    full_name = f"{_import_site_package(directory)}.{module_name}"
    try:
        if ":" not in module_name:
            importlib.invalidate_caches()  # files written since the last import count
            module = importlib.import_module(full_name)
        else:
            module = sys.modules.get(full_name) or _exec_file(full_name, path)
    except Exception as exc:
        hint = _sibling_hint(exc, path.parent)
        raise PluginError(f"{path}: plugin {name!r} failed to import: {exc!r}{hint}") from exc
    found = getattr(module, "__file__", None)
    if found is None or Path(found).resolve() != path.resolve():
        raise PluginError(
            f"{path}: plugin {name!r} is imported as {full_name} from {found}: "
            "rename the module or package that hides it"
        )
    return module


def _exec_file(module_name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _is_plugin_class(obj: object) -> typing.TypeGuard[type[Plugin]]:
    return isinstance(obj, type) and issubclass(obj, Plugin) and obj is not Plugin


def _plugin_class_in(module: ModuleType, name: str, where: str) -> type[Plugin]:
    """``__plugin__``, else the one Plugin subclass defined in ``module`` that no other class
    defined there subclasses."""
    namespace = vars(module)
    if "__plugin__" in namespace:
        chosen = namespace["__plugin__"]
        if not _is_plugin_class(chosen):
            raise PluginError(
                f"{where}: plugin {name!r}: __plugin__ is {chosen!r}, not a Plugin subclass"
            )
        return chosen
    classes = [obj for obj in namespace.values() if _is_plugin_class(obj)]
    defined = [cls for cls in dict.fromkeys(classes) if cls.__module__ == module.__name__]
    leaves = [c for c in defined if not any(o is not c and issubclass(o, c) for o in defined)]
    if len(leaves) == 1:
        return leaves[0]
    if not leaves:
        raise PluginError(f"{where}: plugin {name!r} defines no Plugin subclass")
    names = ", ".join(c.__qualname__ for c in leaves)
    raise PluginError(
        f"{where}: plugin {name!r} defines {len(leaves)} plugin classes ({names}); "
        f"say which one to load with __plugin__ = {leaves[0].__qualname__}"
    )


def _describe_entry_point(ep: EntryPoint) -> str:
    dist = ep.dist
    source = f" (from {dist.name} {dist.version})" if dist is not None else ""
    return f"{ep.name} = {ep.value}{source}"


def _from_entry_point(name: str, ep: EntryPoint) -> type[Plugin]:
    where = f"entry point {_describe_entry_point(ep)}"
    try:
        obj = ep.load()
    except Exception as exc:
        raise PluginError(f"{where}: plugin {name!r} failed to import: {exc!r}") from exc
    if isinstance(obj, ModuleType):
        return _plugin_class_in(obj, name, where)
    if _is_plugin_class(obj):
        return obj
    raise PluginError(f"{where}: {obj!r} is not a Plugin subclass")


def _not_found(name: str, search_path: list[Path]) -> PluginError:
    places = ", ".join(str(p) for p in search_path)
    where = f"in {places} nor " if places else ""
    message = f"plugin {name!r} not found {where}in the entry point group {ENTRY_POINT_GROUP!r}"
    own = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.value.startswith("tsmtp.")]
    if not own:
        message += (
            "; tsmtp's own plugins are missing from it too: install tsmtp "
            "(pip install -e . in a checkout) instead of running it from the source tree"
        )
    return PluginError(message)


def find_plugin_class(name: str, search_path: Iterable[Path]) -> type[Plugin]:
    """The Plugin subclass for ``name``: from the search path, then from entry points."""
    if _NAME.match(name) is None:
        raise PluginError(f"{name!r} is not a valid plugin name")
    directories = list(search_path)
    for directory in directories:
        found = _module_file(name, directory)
        if found is not None:
            path, module_name = found
            module = _import_file(name, path, module_name, directory)
            return _plugin_class_in(module, name, str(path))
    candidates = list(entry_points(group=ENTRY_POINT_GROUP, name=name))
    if len(candidates) > 1:
        claims = " and ".join(_describe_entry_point(ep) for ep in candidates)
        raise PluginError(
            f"plugin {name!r} is claimed by {len(candidates)} entry points: {claims}; "
            "uninstall one, or put the one to use in a search_path directory"
        )
    if candidates:
        return _from_entry_point(name, candidates[0])
    raise _not_found(name, directories)


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
