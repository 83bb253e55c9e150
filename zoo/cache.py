"""The weights cache from the command line: zoo pull, zoo cache ls/verify/rm, zoo lock export/import."""

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

from . import lock
from .config import hf_cache, home
from .errors import ZooError
from .hookspecs import hookimpl


def pull(name, revision=None):
    """Download (or re-verify) everything a model needs and lock it; returns its lock entry or None."""
    import dataclasses

    from .registry import registry
    from .weights import resolve

    record = registry().get(name)
    if revision:
        if record.weights is None or not record.weights.hf:
            raise ZooError(f"{name}: --revision applies to hub weights, and its weights come from elsewhere.")
        record = record.replace(weights=dataclasses.replace(record.weights, revision=revision))
    from .hub import pulling

    with pulling():
        resolve(record)
    return lock.entry(record.name)


def remove(name):
    """Delete a locked model's cached files (inside the caches only) and its lock entry."""
    item = lock.entry(name)
    if item is None:
        raise ZooError(f"{name} is not in the lock: 'zoo cache ls' lists what zoo downloaded.")
    folder = Path(item["folder"]) if item.get("folder") else None
    if item["source"].startswith("hf://"):
        from huggingface_hub import scan_cache_dir

        try:
            scan_cache_dir(hf_cache()).delete_revisions(item["commit"]).execute()
        except Exception as e:  # an already missing cache is fine; anything else is worth a line
            if folder is not None and folder.exists():
                raise ZooError(f"{name}: could not remove {folder} ({e}).") from None
    elif folder is not None and folder.resolve().is_relative_to((home() / "cache").resolve()):
        shutil.rmtree(folder, ignore_errors=True)
    lock.forget(name)


def unused_for(days):
    """Lock entries last used more than `days` days ago (pins never used here count as unused)."""
    limit = datetime.now(timezone.utc) - timedelta(days=days)
    return [n for n, item in lock.read()["models"].items()
            if item.get("last_used") is None or datetime.fromisoformat(item["last_used"]) < limit]


def rows():
    """One row per locked model: name, source, revision, commit, size, last used, verified (fast check)."""
    found = []
    for name, item in sorted(lock.read()["models"].items()):
        found.append({"model": name, "source": item["source"], "revision": item.get("revision") or "-",
                      "commit": item["commit"][:12], "size": sum(f["size"] for f in item["files"].values()),
                      "last_used": item.get("last_used") or "-", "verified": fast_check(name, item)})
    return found


def fast_check(name, item):
    """True when the files match the lock (size and time); None for a pin whose files are not here yet."""
    if not item.get("folder"):
        return None
    try:
        lock.check(name, item, item["folder"])
        return True
    except ZooError:
        return False


@hookimpl
def register_commands(cli):
    from . import cache_cli

    for command in cache_cli.COMMANDS:
        cli.add_command(command)
