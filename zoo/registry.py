"""The registry: records merged from registry.yaml, plugins, user YAML files and code, plus loaders."""

import fnmatch
import importlib.resources
import os
import re
from pathlib import Path

import yaml

from .errors import InvalidRecord, UnknownModel, ZooError
from .plugins import call_each, load_plugins
from .records import parse_record
from .weights import home


def builtin_registry_path():
    """registry.yaml inside the installed package, or at the repository root in a source checkout."""
    packaged = Path(str(importlib.resources.files("zoo"))) / "registry.yaml"
    return packaged if packaged.exists() else Path(__file__).resolve().parent.parent / "registry.yaml"


def user_registry_paths():
    """The user config file ($ZOO_HOME/registry.yaml), then each file named in ZOO_REGISTRY."""
    paths = [home() / "registry.yaml"]
    paths += [Path(p).expanduser() for p in os.environ.get("ZOO_REGISTRY", "").split(os.pathsep) if p]
    return paths


def read_yaml_records(path):
    """[(mapping, override)] from a registry file: a list of records, or {'models': [...]}."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ZooError(f"Registry file {path} does not exist (named by ZOO_REGISTRY?).") from None
    except yaml.YAMLError as e:
        raise ZooError(f"{path}: not valid YAML: {e}") from None
    if isinstance(data, dict):
        data = data.get("models")
    if data is None:
        return []
    if not isinstance(data, list):
        raise ZooError(f"{path}: expected a list of model records (or a 'models:' list).")
    return [(parse_record(item, source=str(path)), bool(isinstance(item, dict) and item.get("override"))) for item in data]


def natural_key(name):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


class Registry:
    def __init__(self):
        self.records = {}
        self.aliases = {}
        self.loaders = {}  # plugin name -> loader
        self.builders = {}  # record name -> loader, for models registered with a builder in code

    def add(self, record, *, override=False, loader=None):
        record = parse_record(record)
        existing = self.records.get(record.name)
        if existing is not None and not override:
            raise ZooError(
                f"Model {record.name!r} from {record.source} is already registered from {existing.source}. "
                "Mark the later record 'override: true' (or pass override=True) to replace it."
            )
        if existing is not None:
            for alias in existing.aliases:
                self.aliases.pop(alias, None)
        for alias in record.aliases:
            owner = self.aliases.get(alias)
            if (owner and owner != record.name) or (alias in self.records and alias != record.name):
                raise InvalidRecord(record.source, record.name, "aliases", f"{alias!r} already names {owner or alias!r}")
        self.records[record.name] = record
        for alias in record.aliases:
            self.aliases[alias] = record.name
        if loader is not None:
            self.builders[record.name] = loader
        return record

    def get(self, name):
        name = self.aliases.get(name, name)
        if name in self.records:
            return self.records[name]
        record = load_plugins().hook.resolve_model(name=name)
        if record is not None:
            return record
        raise UnknownModel(name, list(self.records) + list(self.aliases))

    def names(self, pattern=None, *, task=None, plugin=None):
        names = []
        for name, record in self.records.items():
            if pattern and not (
                fnmatch.fnmatch(name, pattern) or any(fnmatch.fnmatch(a, pattern) for a in record.aliases)
            ):
                continue
            if task and task not in record.tasks:
                continue
            if plugin and record.plugin != plugin:
                continue
            names.append(name)
        return sorted(names, key=natural_key)

    def loader_for(self, record):
        if record.name in self.builders:
            return self.builders[record.name]
        if record.plugin not in self.loaders:
            raise ZooError(
                f"Model {record.name!r} needs the plugin {record.plugin!r}, which is not loaded. "
                "Run 'zoo plugins' to see what loaded and what failed (is ZOO_PLUGINS limiting it?)."
            )
        return self.loaders[record.plugin]


_registry = None


def registry():
    """The merged registry, built on first use."""
    global _registry
    if _registry is None:
        _registry = _build()
    return _registry


def reset():
    """Forget the merged registry (tests, or after changing ZOO_REGISTRY)."""
    global _registry
    _registry = None


def _build():
    reg = Registry()
    for record, override in read_yaml_records(builtin_registry_path()):
        reg.add(record, override=override)

    def register_loader(plugin, loader):
        reg.loaders[plugin] = loader

    def register_model(record, override=False):
        reg.add(parse_record(record, source="plugin"), override=override)

    call_each("register_loaders", register=register_loader)
    call_each("register_models", register=register_model)
    for path in user_registry_paths():
        # The user file is optional; a file named in ZOO_REGISTRY must exist.
        if path.exists() or path != home() / "registry.yaml":
            for record, override in read_yaml_records(path):
                reg.add(record, override=override)
    return reg


def register(record, *, loader=None, override=False):
    """Register a record (ModelRecord or mapping) in code; `loader` builds it, else its plugin does."""
    return registry().add(record, override=override, loader=loader)



def save_user_record(record):
    """Add (or replace) a record in the user registry file, $ZOO_HOME/registry.yaml, atomically."""
    from .files import write_text

    record = parse_record(record)
    path = home() / "registry.yaml"
    saved = {r.name: (r, override) for r, override in read_yaml_records(path)} if path.exists() else {}
    existing = registry().records.get(record.name)
    # Replacing a record from another source (built-in, plugin) needs the explicit override flag.
    override = saved.get(record.name, (None, False))[1] or (existing is not None and existing.source != str(path))
    saved[record.name] = (record, override)
    entries = [{**_strip(r.to_dict()), **({"override": True} if o else {})} for r, o in saved.values()]
    write_text(path, yaml.safe_dump({"models": entries}, sort_keys=False))
    reset()
    return path


def _strip(entry):
    return {k: v for k, v in entry.items() if k != "source" and v not in (None, [], {})}
