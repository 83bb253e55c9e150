"""Paths and files: atomic writes (a reader, or a crash, sees the old file or the new one, never half of one),
checked paths, digests."""

import contextlib
import functools
import hashlib
import os
import tempfile
from pathlib import Path

from .errors import BadInput, ZooError


def as_path(value):
    """A Path from what a user passed, `~` expanded, `file://` dropped (as qwen-vl-utils reads the model cards'
    `file:///path/to/image.jpg`); one line for what no file system takes (a NUL byte, a character it cannot store,
    a name over its length limits), where Python raises ValueError or OSError, which would read as bugs."""
    text = os.fspath(value).removeprefix("file://")
    if "\x00" in text:
        raise BadInput(f"{text!r} is not a usable path: it holds a NUL byte.")
    try:
        raw = os.fsencode(text)
    except UnicodeError:
        raise BadInput(f"{text[:80]!r} is not a usable path: it holds characters file names cannot.") from None
    name_max, path_max = _limit("PC_NAME_MAX", 255), _limit("PC_PATH_MAX", 4096)
    if len(raw) >= path_max or any(len(part) > name_max for part in raw.split(os.sep.encode())):
        raise BadInput(f"{text[:80]}... is not a usable path: longer than the file system allows ({name_max} bytes "
                       f"a name, {path_max} in all).")
    return Path(text).expanduser()


@functools.cache
def _limit(name, default):
    try:
        return os.pathconf("/", name)
    except (AttributeError, ValueError, OSError):  # no pathconf (Windows), or the system does not say
        return default


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = file_target(Path(path))
    tmp = _temp_beside(path)
    try:
        yield tmp
        try:
            # mkstemp makes 0600 (and writers that replace the file, as safetensors does, keep it): the saved
            # file gets the usual permissions
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except OSError as e:
            raise ZooError(f"Cannot write {path}: {e.strerror or e}.") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def check_writable(path):
    """Fail now, before long work, if `path` could not be written later; an existing file is left as it is."""
    path = as_path(path)
    if path.is_dir():
        raise ZooError(f"Cannot write {path}: it is a folder. Name a file.")
    _temp_beside(file_target(path)).unlink()


def file_target(path):
    """Where writing `path` lands: through a symbolic link to its target (a rename would replace the link), and
    never onto a device, pipe or socket (a rename would replace /dev/null itself with a file)."""
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file() and not path.is_dir():
        raise ZooError(f"{path} is a device, pipe or socket, not a file: name a file.")
    return path


def _temp_beside(path):
    """An empty file in `path`'s folder (made if missing), where a rename onto `path` cannot cross file systems."""
    blocker = next((parent for parent in path.parents if parent.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ZooError(f"Cannot write {path}: {blocker} is a file, not a folder. Choose a folder you can write to.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise ZooError(f"Cannot write {path}: {e.strerror or e}. Choose a folder you can write to.") from None
    os.close(fd)
    return Path(tmp)


def read_json_object(path, what):
    """The JSON object in `path` (a config zoo wrote); one line when it is missing, damaged or not an object."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise BadInput(f"{path} is not a readable {what} ({getattr(e, 'strerror', None) or e}).") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a JSON object ({what}), found {type(data).__name__}.")
    return data


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_digest(path, algorithm="sha256"):
    """The hex digest of a file, read a block at a time (checkpoints and archives can be gigabytes)."""
    digest = hashlib.new(algorithm, usedforsecurity=False)  # md5 checks a published archive; FIPS refuses it else
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
