"""zoo.lock: for every download, the resolved commit and each file's sha256, so loads verify and teams pin.

The file is JSON in $ZOO_HOME, written under a file lock and atomically:
{"version": 1, "models": {name: {"source", "revision", "commit", "files": {path: {"sha256", "size"}},
"pulled", "last_used", "folder", "mtimes"}}}. Loads check size and modification time (the fast path) and hash
a file whose modification time changed; `zoo cache verify` hashes everything. A team shares the pins alone
(`PIN_FIELDS`): where files lie and when they were used belong to one machine.
"""

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path

from .config import lock_path
from .errors import UnsafeWeights, ZooError
from .files import file_digest, write_text

VERSION = 1
PIN_FIELDS = ("source", "revision", "commit", "files")
SHA256 = re.compile(r"[0-9a-f]{64}")


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
    for name, item in data["models"].items():
        check_pin(path, name, item)
    return data


def check_pin(path, name, item):
    """A lock entry names a commit and, for each file, a relative path inside the snapshot, a sha256 and a size."""
    problem = pin_problem(item) or local_problem(item)
    if problem:
        raise ZooError(f"{path}: entry {name!r} {problem}; fix or remove it (zoo pull {name} writes a good one).")


def pin_problem(item):
    if not isinstance(item, dict) or not isinstance(item.get("commit"), str) or not item["commit"]:
        return "has no commit to pin"
    if not isinstance(item.get("source"), str) or not isinstance(item.get("files"), dict):
        return "lacks its source or its files"
    for path, file in item["files"].items():
        if Path(path).is_absolute() or ".." in Path(path).parts or not path:
            return f"names a file outside its snapshot ({path!r})"
        if not (isinstance(file, dict) and SHA256.fullmatch(str(file.get("sha256"))) and
                isinstance(file.get("size"), int) and file["size"] >= 0):
            return f"has no sha256 and size for {path!r}"
    return None


def local_problem(item):
    """What this machine wrote beside a pin (where its files lie, their times), when it is not what zoo writes."""
    if item.get("folder") is not None and not isinstance(item["folder"], str):
        return "names its folder with something other than a path"
    mtimes = item.get("mtimes", {})
    if not (isinstance(mtimes, dict) and all(isinstance(t, int) and not isinstance(t, bool) for t in mtimes.values())):
        return "has file times that are not whole numbers"
    for key in (k for k in ("pulled", "last_used") if item.get(k) is not None):
        if not is_utc_time(item[key]):
            return f"has a {key} time that is not an ISO date with its time zone ({item[key]!r})"
    return None


def is_utc_time(text):
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except (TypeError, ValueError):
        return False


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
    for path, expected in item["files"].items():
        local = Path(folder) / path
        if not local.is_file() or local.stat().st_size != expected["size"]:
            raise UnsafeWeights(f"{name}: {local} is missing or changed size since it was pulled; run 'zoo pull {name}'.")
        same_time = item.get("mtimes", {}).get(path) == local.stat().st_mtime_ns
        if (full or not same_time) and file_digest(local) != expected["sha256"]:
            raise UnsafeWeights(f"{name}: {local} does not match its sha256 in {lock_path()}: the file changed since "
                                f"it was pulled. Remove it ('zoo cache rm {name}') and pull again.")


def touch(name, folder):
    """Record that a model was used now from `folder` (for 'zoo cache ls' and '--older-than'); a pin imported
    from a team learns where its checked files lie here."""
    def change(models):
        item = models.get(name)
        if item is not None:
            item["last_used"] = now()
            if item.get("folder") != str(folder):
                item.update(folder=str(folder), mtimes=mtimes(folder, item["files"]))

    update(change)


def forget(name):
    update(lambda models: models.pop(name, None))


def pins(models):
    return {name: {k: item.get(k) for k in PIN_FIELDS} for name, item in models.items()}


def export(dest):
    """Write the pins (no paths or times of this machine) for a team to import."""
    write_text(dest, json.dumps({"version": VERSION, "models": pins(read()["models"])}, indent=2, sort_keys=True))


def import_from(source):
    """Merge another lock's pins (a team's): loads then resolve those commits and check those hashes.

    An entry already here with the same commit and files keeps what this machine knows of it (its folder)."""
    theirs = pins(read(source)["models"])

    def merge(models):
        for name, pin in theirs.items():
            ours = models.get(name, {})
            same = all(ours.get(k) == pin[k] for k in ("commit", "files"))
            models[name] = {**ours, **pin} if same else pin

    update(merge)
    return sorted(theirs)
