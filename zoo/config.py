"""Where zoo keeps its files and whether it may use the network: the settings every module reads."""

import os
from pathlib import Path

from .files import as_path


def home():
    """The zoo home directory: ZOO_HOME, else ~/.zoo. It holds the cache, user records and results."""
    path = as_path(os.environ.get("ZOO_HOME") or Path.home() / ".zoo")
    if path.exists() and not path.is_dir():
        from .errors import ZooError

        raise ZooError(f"ZOO_HOME={path} is a file: zoo keeps a folder there. Point ZOO_HOME at a folder.")
    return path


def truthy(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def env_number(name, default, kind=int):
    """A number above 0 from the environment variable `name` (unset or empty: `default`); else one line."""
    import math

    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not (value > 0 and math.isfinite(value)):
        from .errors import ZooError

        number = "a whole number" if kind is int else "a number"
        raise ZooError(f"{name}={text!r}: use {number} above 0 (unset, it is {default}).")
    return value


def offline():
    """True when ZOO_OFFLINE or HF_HUB_OFFLINE is set: zoo then makes no network request at all."""
    return truthy("ZOO_OFFLINE") or truthy("HF_HUB_OFFLINE")


def hf_cache():
    """The Hugging Face hub cache, read now (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return as_path(os.environ["HF_HUB_CACHE"])
    return as_path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface") / "hub"


def hf_endpoint():
    return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"


def lock_path():
    """The lock of every downloaded file: resolved commits and sha256s (zoo pull, zoo lock)."""
    return home() / "zoo.lock"


SETTINGS = ("allowed_licenses",)  # what config.yaml may set
YAML_VALUES = 100_000  # far more than any registry or config holds, far fewer than a "billion laughs" file expands to


def yaml_data(text, path):
    """Parsed YAML text. Aliases are shared, not copied, when PyYAML reads them, but whoever walks the data later
    expands them: a file that expands past YAML_VALUES values is refused now, by a walk that stops there."""
    import yaml

    from .errors import ZooError

    data = yaml.safe_load(text)
    pending, seen = [data], 0
    while pending:
        value = pending.pop()
        seen += 1
        if seen > YAML_VALUES:
            raise ZooError(f"{path}: more than {YAML_VALUES:,} values once its aliases (*name) are expanded; write "
                           "the values out, or split the file.")
        if isinstance(value, dict):
            pending.extend([*value.keys(), *value.values()])
        elif isinstance(value, list):
            pending.extend(value)
    return data


def user_config():
    """$ZOO_HOME/config.yaml as a mapping (absent: empty); a misspelt setting is an error, not a silent no-op."""
    import yaml

    from .errors import ZooError

    path = home() / "config.yaml"
    try:
        data = yaml_data(path.read_text(), path) if path.is_file() else {}
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        raise ZooError(f"{path}: not a readable YAML config ({' '.join(str(e).split())[:120]}).") from None
    if not isinstance(data, dict):
        raise ZooError(f"{path}: expected a mapping of settings, such as 'allowed_licenses: [apache-2.0, mit]'.")
    unknown = sorted(set(map(str, data)) - set(SETTINGS))
    if unknown:
        raise ZooError(f"{path}: unknown setting {unknown[0]!r}; the settings are {', '.join(SETTINGS)}.")
    return data


def user_registry_path():
    return home() / "registry.yaml"


def registry_paths():
    """The user registry file, then each file named in ZOO_REGISTRY (os.pathsep-separated)."""
    extra = [as_path(p) for p in os.environ.get("ZOO_REGISTRY", "").split(os.pathsep) if p]
    return [user_registry_path(), *extra]


def results_db_path(path=None):
    return as_path(path or os.environ.get("ZOO_RESULTS_DB") or home() / "results.db")
