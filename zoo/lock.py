"""zoo.lock: for every download, the resolved commit and each file's sha256, so loads verify and teams pin.

The file is JSON in $ZOO_HOME, written under a file lock and atomically:
{"version": 1, "models": {name: {"source", "revision", "commit", "files": {path: {"sha256", "size"}},
"pulled", "last_used"}}}. Loads check size and modification time (the fast path) and hash a file whose
modification time changed; `zoo cache verify` hashes everything.
"""

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from .config import lock_path
from .errors import UnsafeWeights, ZooError
from .files import write_text

VERSION = 1


def now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read(path=None):
    path = Path(path or lock_path())
    if not path.exists():
        return {"version": VERSION, "models": {}}
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise ZooError(f"{path} is not a readable zoo lock ({e}): fix it, or move it aside to start a new one.") from None
    if not (isinstance(data, dict) and data.get("version") == VERSION and isinstance(data.get("models"), dict)):
        raise ZooError(f"{path} is not a version {VERSION} zoo lock: expected {{'version': 1, 'models': {{...}}}}.")
    return data


def update(change):
    """Apply change(data) to the lock under a file lock; concurrent pulls each keep their entries."""
    from filelock import FileLock

    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        data = read(path)
        change(data["models"])
        write_text(path, json.dumps(data, indent=2, sort_keys=True))


def entry(name):
    return read()["models"].get(name)


def record(name, source, revision, commit, folder, digests):
    """Lock a download: its commit and every file's sha256 (`digests`, as the download checked them) and size."""
    files = {p: {"sha256": sha, "size": (Path(folder) / p).stat().st_size} for p, sha in digests.items()}
    item = {"source": source, "revision": revision, "commit": commit, "files": files, "pulled": now(),
            "last_used": now(), "mtimes": mtimes(folder, digests), "folder": str(folder)}
    update(lambda models: models.__setitem__(name, item))
    return item


def mtimes(folder, paths):
    return {p: os.stat(Path(folder) / p).st_mtime_ns for p in paths}


def check(name, item, folder, *, full=False):
    """Raise UnsafeWeights if a file of the lock entry `item` is missing from `folder` or differs from the lock."""
    from .weights import sha256_of

    for path, expected in item["files"].items():
        local = Path(folder) / path
        if not local.is_file() or local.stat().st_size != expected["size"]:
            raise UnsafeWeights(f"{name}: {local} is missing or changed size since it was pulled; run 'zoo pull {name}'.")
        same_time = item.get("mtimes", {}).get(path) == local.stat().st_mtime_ns
        if (full or not same_time) and sha256_of(local) != expected["sha256"]:
            raise UnsafeWeights(f"{name}: {local} does not match its sha256 in {lock_path()}: the file changed since "
                                f"it was pulled. Remove it ('zoo cache rm {name}') and pull again.")


def touch(name):
    """Record that a model was used now (for 'zoo cache ls' and '--older-than')."""
    update(lambda models: models[name].__setitem__("last_used", now()) if name in models else None)


def forget(name):
    update(lambda models: models.pop(name, None))


def export(dest):
    write_text(dest, json.dumps(read(), indent=2, sort_keys=True))


def import_from(source):
    """Merge another lock's entries (a team's pins): loads then resolve those commits."""
    theirs = read(source)["models"]
    for name, item in theirs.items():
        if not isinstance(item, dict) or not isinstance(item.get("commit"), str):
            raise ZooError(f"{source}: entry {name!r} has no commit to pin.")
    update(lambda models: models.update(theirs))
    return sorted(theirs)
