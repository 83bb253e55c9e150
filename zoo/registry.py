"""The registry: records merged from registry.yaml, plugins, user YAML files and code, plus loaders."""

import fnmatch
import importlib.resources
import re
from pathlib import Path

import yaml

from .config import registry_paths, user_registry_path, yaml_data
from .errors import BadInput, InvalidRecord, PluginError, UnknownModel, ZooError
from .plugins import Names, call_each, call_first
from .records import parse_record


def builtin_registry_path():
    """registry.yaml inside the installed package, or at the repository root in a source checkout."""
    packaged = Path(str(importlib.resources.files("zoo"))) / "registry.yaml"
    return packaged if packaged.exists() else Path(__file__).resolve().parent.parent / "registry.yaml"


def read_yaml_records(path):
    """[(mapping, override)] from a registry file: a list of records, or {'models': [...]}."""
    path = Path(path)
    try:
        data = yaml_data(path.read_text(encoding="utf-8"), path)
    except FileNotFoundError:
        raise ZooError(f"Registry file {path} does not exist (named by ZOO_REGISTRY?).") from None
    except IsADirectoryError:
        raise ZooError(f"Registry file {path} is a folder: name a YAML file (ZOO_REGISTRY=path/to/models.yaml).") from None
    except UnicodeDecodeError:
        raise ZooError(f"{path}: not a text file; a registry is YAML text.") from None
    except OSError as e:
        raise ZooError(f"Registry file {path}: {e.strerror}.") from None
    except yaml.YAMLError as e:
        raise ZooError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if isinstance(data, dict):
        unknown = sorted(set(map(str, data)) - {"models"})
        if unknown:  # a misspelt 'models:' would otherwise add no model, silently
            raise ZooError(f"{path}: unknown key {unknown[0]!r} at the top; a registry file is a list of records, or "
                           "holds them under 'models:'.")
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
        self.loaders = Names("loader")  # plugin name -> loader: a Model class (or anything with load and Options)
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
        if record.name in self.aliases and self.aliases[record.name] != record.name:
            raise InvalidRecord(record.source, record.name, "name",
                                f"{record.name!r} is already an alias of {self.aliases[record.name]!r}")
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
        if not isinstance(name, str):
            raise BadInput(f"A model name is text, such as 'vit-cifar'; got {type(name).__name__} {name!r:.40}.")
        name = self.aliases.get(name, name)
        if name in self.records:
            return self.records[name]
        record = call_first("resolve_model", name=name)
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

    def add_loader(self, name, loader, owner, override=False):
        missing = [a for a in ("load", "Options", "options_for") if not hasattr(loader, a)]
        if missing:
            raise PluginError(f"Plugin {owner!r}: the loader {name!r} must be a zoo.Model subclass (it lacks "
                              f"{', '.join(missing)}); see docs/writing-plugins.md.")
        self.loaders.add(name, loader, owner, override)


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

    def loaders(owner):
        return {"register": lambda name, loader, override=False: reg.add_loader(name, loader, owner, override)}

    def models(owner):
        return {"register": lambda record, override=False: reg.add(parse_record(record, source=f"plugin {owner}"),
                                                                   override=override)}

    call_each("register_loaders", loaders)
    call_each("register_models", models)
    for path in registry_paths():
        # The user file is optional; a file named in ZOO_REGISTRY must exist.
        if path.exists() or path != user_registry_path():
            for record, override in read_yaml_records(path):
                reg.add(record, override=override)
    return reg


def register(record, *, loader=None, override=False):
    """Register a record (ModelRecord or mapping) in code; `loader` builds it, else its plugin does."""
    return registry().add(record, override=override, loader=loader)


def save_user_record(record):
    """Add (or replace) a record in the user registry file, under a lock and atomically.

    Concurrent writers (two probes, a probe and a training run) each keep their record, and models
    registered in code stay registered.
    """
    from filelock import FileLock

    from .files import write_text

    record = parse_record(record)
    path = user_registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        saved = {r.name: (r, override) for r, override in read_yaml_records(path)} if path.exists() else {}
        existing = registry().records.get(record.name)
        # Replacing a record from another source (built-in, plugin) needs the explicit override flag.
        override = saved.get(record.name, (None, False))[1] or (existing is not None and existing.source != str(path))
        saved[record.name] = (record, override)
        entries = [{**_strip(r.to_dict()), **({"override": True} if o else {})} for r, o in saved.values()]
        write_text(path, yaml.safe_dump({"models": entries}, sort_keys=False))
    record = record.replace(source=str(path))
    registry().add(record, override=True)
    return path


def _strip(entry):
    return {k: v for k, v in entry.items() if k != "source" and v not in (None, [], {})}
