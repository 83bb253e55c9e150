"""Loads plugins: the built-ins and third-party packages alike, from the 'zoo' entry-point group."""

import importlib
import os
import warnings
from dataclasses import dataclass
from importlib import metadata

import pluggy

from . import hookspecs
from .errors import PluginError

ENTRY_POINT_GROUP = "zoo"
# The core module that implements a hook itself: the built-in weight resolver.
CORE_PLUGINS = ("zoo.weights",)


@dataclass
class PluginFailure:
    plugin: str
    stage: str
    error: str


class Names:
    """Names plugins register (loaders, datasets, commands): a name owned by another plugin is refused."""

    def __init__(self, kind):
        self.kind, self.values, self.owners = kind, {}, {}

    def add(self, name, value, owner, override=False):
        holder = self.owners.get(name)
        if holder is not None and holder != owner and not override:
            raise PluginError(f"Plugin {owner!r} registers the {self.kind} {name!r}, which plugin {holder!r} "
                              "already registered. Rename it, or pass override=True to replace it on purpose.")
        self.values[name], self.owners[name] = value, owner

    def __contains__(self, name):
        return name in self.values

    def __getitem__(self, name):
        return self.values[name]


def _manager():
    manager = pluggy.PluginManager("zoo")
    manager.add_hookspecs(hookspecs)
    return manager


pm = _manager()
failures: list[PluginFailure] = []
_loaded = False


def reset():
    """Forget loaded plugins and failures (tests, or after changing ZOO_PLUGINS)."""
    global pm, _loaded
    pm, _loaded = _manager(), False
    failures.clear()


def register_plugin(plugin, name=None):
    """Register a module or object of hook implementations; a misspelt hook is a PluginError."""
    name = name or getattr(plugin, "__name__", None) or repr(plugin)
    if pm.has_plugin(name) and pm.get_plugin(name) is not plugin:
        raise PluginError(f"Two plugins are named {name!r}; the second ({plugin!r}) was not loaded. Rename its "
                          "entry point.")
    if pm.has_plugin(name):
        return
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        if pm.has_plugin(name):
            pm.unregister(name=name)
        hooks = ", ".join(n for n in dir(hookspecs) if n.startswith(("register_", "resolve_")))
        raise PluginError(f"Plugin {name!r}: {e}. The zoo hooks are: {hooks}.") from None


def allowed_plugins():
    """ZOO_PLUGINS (comma-separated names) limits which entry-point plugins load; unset loads all."""
    value = os.environ.get("ZOO_PLUGINS")
    if value is None:
        return None
    return {p.strip() for p in value.split(",") if p.strip()}


def load_plugins():
    global _loaded
    if _loaded:
        return pm
    _loaded = True
    for module in CORE_PLUGINS:
        register_plugin(importlib.import_module(module), name=module)
    allowed = allowed_plugins()
    # zoo's own plugins first: a third-party entry point of the same name cannot take their place.
    entry_points = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP),
                          key=lambda ep: getattr(ep.dist, "name", None) != "zoo")
    for ep in entry_points:
        if allowed is not None and ep.name not in allowed:
            continue
        try:
            register_plugin(ep.load(), name=ep.name)
        except (Exception, SystemExit) as e:  # a broken plugin is reported, never fatal
            report_failure(ep.name, "import", e)
    installed = sorted({ep.name for ep in entry_points})
    for name in sorted((allowed or set()) - set(installed)):  # a misspelt name, say
        report_failure(name, "ZOO_PLUGINS", PluginError(f"no installed plugin has this name; installed: "
                                                        f"{', '.join(installed)}"))
    return pm


def report_failure(plugin, stage, error):
    failures.append(PluginFailure(plugin, stage, f"{type(error).__name__}: {error}"))
    warnings.warn(f"zoo plugin {plugin!r} failed during {stage}: {error}", stacklevel=3)


def call_each(hook_name, arguments):
    """Call every implementation of a hook on its own, so one plugin's error spares the rest.

    arguments(plugin_name) gives the hook's keyword arguments for that plugin (its register functions
    know who registers).
    """
    load_plugins()
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls():  # registration order (pluggy's own calls run last-registered first)
        try:
            kwargs = arguments(impl.plugin_name)
            impl.function(**{k: kwargs[k] for k in impl.argnames})
        except (Exception, SystemExit) as e:
            report_failure(impl.plugin_name, hook_name, e)


def call_first(hook_name, **kwargs):
    """The first non-None answer of a firstresult hook, asking each plugin on its own (pluggy's order).

    A ZooError is the plugin's answer and propagates; any other error is reported and the next plugin asked.
    """
    from .errors import ZooError

    load_plugins()
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
        try:
            answer = impl.function(**{k: kwargs[k] for k in impl.argnames})
        except ZooError:
            raise
        except Exception as e:
            report_failure(impl.plugin_name, hook_name, e)
            continue
        if answer is not None:
            return answer
    return None


def plugin_list():
    """[{'name', 'hooks', 'version'}] for every loaded plugin, then the failures."""
    load_plugins()
    dists = {ep.name: ep.dist for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    rows = []
    for name, plugin in pm.list_name_plugin():
        dist = dists.get(name)
        rows.append(
            {
                "name": name,
                "hooks": sorted(h.name for h in pm.get_hookcallers(plugin) or []),
                "package": f"{dist.name} {dist.version}" if dist else "zoo (core)",
            }
        )
    return rows
