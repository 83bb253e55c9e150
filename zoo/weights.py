"""Weight resolution (explicit path, then cache, then the network when allowed) and safe loading."""

import hashlib
import importlib.resources
import math
import os
import tempfile
from pathlib import Path

from . import lock
from .config import home, offline
from .errors import BadInput, MissingWeights, UnsafeWeights, ZooError
from .files import as_path, file_digest
from .hookspecs import hookimpl
from .hub import timeout
from .inputs import download

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def resolve(record, weights=None):
    """A local path (file or directory) with the record's weights, or None when it has no source."""
    if weights is not None:
        if not isinstance(weights, (str, os.PathLike)):
            raise BadInput(f"weights={weights!r}: pass the path of a weights file or a save_pretrained folder.")
        path = as_path(weights)
        if not path.exists():
            raise MissingWeights(f"weights={str(weights)!r} for model {record.name!r} does not exist.")
        return path
    from .plugins import call_first

    path = call_first("resolve_weights", record=record, offline=offline())
    if path is None and record.weights is None:
        return None  # a model without weights (random initialisation, or none needed)
    if path is None:
        raise MissingWeights(f"No plugin could resolve the weights of {record.name!r} ({record.weights.describe()}).")
    return Path(path)


_hashes = {}


def content_hash(path):
    """sha256 of a file, or of a folder's (relative path, file hash) list; memoised by size and mtime."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _hashes:
            _hashes[key] = file_digest(file)
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}\0{_hashes[key]}\n".encode())
    return digest.hexdigest()


def verify(path, expected, what):
    """A file's sha256, or a folder's content_hash (its manifest of file hashes), must be `expected`."""
    actual = content_hash(path) if Path(path).is_dir() else file_digest(path)
    if actual != expected:
        raise UnsafeWeights(
            f"sha256 mismatch for {what} ({path}): expected {expected}, got {actual}. "
            "The file is corrupt or not the published one; delete it and download again."
        )


@hookimpl(trylast=True)
def resolve_weights(record, offline):
    """The built-in resolver: local path, packaged file, URL with sha256, Hugging Face hub."""
    w = record.weights
    if w is None:
        return None
    if w.path:
        path = Path(w.path).expanduser()
        if not path.is_absolute() and Path(record.source).is_file():
            path = Path(record.source).parent / path  # relative to the YAML file that names it
        if not path.exists():
            raise MissingWeights(f"Model {record.name!r}: its weights path {str(path)!r} does not exist.")
        if w.sha256:
            verify(path, w.sha256, f"model {record.name!r}")
        return path
    if w.package:
        package, _, inner = w.package.partition("/")
        path = Path(str(importlib.resources.files(package))) / inner
        if not path.exists():
            raise MissingWeights(f"Model {record.name!r}: the installed package lacks {w.package!r}; reinstall zoo.")
        return path
    if w.url:
        return _fetch_url(record, w, offline)
    from .hub import snapshot

    return snapshot(record, w, offline)


def _fetch_url(record, w, offline):
    target = home() / "cache" / w.sha256[:16] / (Path(w.url.split("?")[0]).name or "weights")
    if target.exists():
        verify(target, w.sha256, f"cached weights of {record.name!r}")
        return target
    if offline:
        raise MissingWeights(
            f"Model {record.name!r}: no cached weights at {target}, and downloads are off "
            "(ZOO_OFFLINE or HF_HUB_OFFLINE). Copy the file there, pass weights=PATH, or allow the network."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:  # weights are as large as they are: only the sha256 bounds them
            download(w.url, out, "weights", limit=math.inf, seconds=math.inf, timeout=timeout())
        verify(tmp, w.sha256, f"the download of {w.url}")
        os.replace(tmp, target)  # atomic: a cache entry is either whole or absent
        lock.record(record.name, f"url:{w.url}", None, w.sha256, target.parent, {target.name: w.sha256})
    except BadInput as e:
        raise MissingWeights(f"Model {record.name!r}: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def weight_file(path):
    """The one weights file in a path: the path itself, or the best candidate inside a directory."""
    path = Path(path)
    if path.is_file():
        return path
    for pattern in ("model.safetensors", "*.safetensors", "pytorch_model.bin", "*.pth", "*.pt", "*.bin"):
        found = sorted(path.glob(pattern))
        if found:
            return found[0]
    raise MissingWeights(f"No weights file ({', '.join(WEIGHT_SUFFIXES)}) in {path}.")


def read_safetensors(file):
    """The tensors of a safetensors file; a truncated, empty or garbage file is a clear error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(file)
    except (SafetensorError, OSError, ValueError) as e:
        raise UnsafeWeights(f"{file} is not a readable safetensors file ({e}); it may be truncated or damaged: "
                            "download or save it again.") from None


def apply_state_dict(module, state, what):
    """module.load_state_dict(state), with a mismatch explained: the first keys and the likely cause."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and hasattr(state[k], "shape") and state[k].shape != own[k].shape]
    if missing or extra or shapes:
        parts = [f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", extra), ("wrong shape", shapes)) if keys]
        raise misfit(what, "; ".join(parts))
    module.load_state_dict(state)


def misfit(what, details):
    """The error for weights that do not fit the network built for them."""
    return ZooError(f"{what}: the weights do not fit the network ({details[:300].rstrip('. ')}). They are probably "
                    "for another architecture or other model_args.")


def load_state_dict(path):
    """Tensors only: safetensors, or a checkpoint loaded with weights_only=True. Never whole pickles."""
    import torch

    file = weight_file(path)
    if file.suffix == ".safetensors":
        return read_safetensors(file)
    if file.suffix not in WEIGHT_SUFFIXES:
        raise UnsafeWeights(f"{file}: unknown weights format; use .safetensors (preferred) or .pt/.pth/.bin.")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UnsafeWeights(
            f"Refusing to load {file}: it is not a plain tensor checkpoint and zoo never unpickles "
            f"arbitrary objects ({type(e).__name__}). Save model.state_dict() with safetensors instead."
        ) from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ZooError(f"{file}: expected a state dict of tensors, got {type(state).__name__}.")
    return state
