"""Weights from the Hugging Face hub (or any server speaking its file protocol, named by HF_ENDPOINT).

Every download is checked against the hashes the hub itself declares for the commit (sha256 for LFS
files, the git blob id for the others) and recorded in zoo.lock; a load of a locked model checks its
files against the lock. Without a pinned revision, a record resolves through the lock once it has one.
"""

import contextlib
import contextvars
import glob
import hashlib
from pathlib import Path

from . import lock
from .config import env_number, hf_cache, hf_endpoint
from .errors import MissingWeights, UnsafeWeights
from .files import file_digest

TIMEOUT_S = 10  # per request; ZOO_HUB_TIMEOUT changes it
# Weights in formats zoo never loads from a repository that has safetensors (transformers' choice too): pickles,
# Flax, TensorFlow, ONNX, GGUF. Repositories often carry the same weights in several of them, gigabytes each.
OTHER_FORMATS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".msgpack", ".h5", ".ot", ".onnx", ".onnx_data", ".tflite",
                 ".gguf")
_pulling = contextvars.ContextVar("zoo_pulling", default=False)


@contextlib.contextmanager
def pulling():
    """Within it, resolving hub weights always asks the hub and verifies every file (zoo pull)."""
    token = _pulling.set(True)
    try:
        yield
    finally:
        _pulling.reset(token)


def timeout():
    return env_number("ZOO_HUB_TIMEOUT", TIMEOUT_S, float)


def snapshot(record, w, offline, patterns=None):
    """A local folder with the record's hub files (`patterns`, else the one file named, else all): from the cache
    (checked against the lock), else downloaded."""
    locked = lock.entry(record.name)
    revision = w.revision or (locked or {}).get("commit")
    patterns = patterns or ([w.filename] if w.filename else None)
    cached = None if _pulling.get() else cached_snapshot(w.hf, revision, patterns)
    if cached is not None:
        if locked is not None:
            lock.check(record.name, locked, cached)
            lock.touch(record.name, cached)
        return cached
    if offline:
        raise MissingWeights(
            f"Model {record.name!r}: weights not found in the Hugging Face cache ({hf_cache()}) for "
            f"{w.hf}@{revision or 'main'}, and downloads are off (ZOO_OFFLINE or HF_HUB_OFFLINE). Pass weights=PATH "
            f"(a file or a save_pretrained folder), or run once with the network: zoo pull {record.name}")
    return download(record, w, revision, patterns, locked)


def cached_snapshot(repo, revision, patterns):
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns, local_files_only=True,
                                      cache_dir=hf_cache()))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        return None


def download(record, w, revision, patterns, locked):
    """Download the commit `revision` resolves to, verify every file, and lock it."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.hf_api import RepoFile

    try:
        api = HfApi(endpoint=hf_endpoint())
        commit = api.repo_info(w.hf, revision=revision, timeout=timeout()).sha
        listing = wanted({f.path: f for f in api.list_repo_tree(w.hf, revision=commit, recursive=True)
                          if isinstance(f, RepoFile)}, patterns)
        folder = Path(snapshot_download(w.hf, revision=commit, allow_patterns=[glob.escape(p) for p in listing],
                                        cache_dir=hf_cache(), endpoint=hf_endpoint(), etag_timeout=timeout()))
    except Exception as e:  # the hub client raises many kinds: unreachable, refused, 404, 401, 500, timeouts
        reason = " ".join(str(e).split())[:160]
        raise MissingWeights(
            f"Model {record.name!r}: could not download {w.hf} from the hub at {hf_endpoint()} ({type(e).__name__}: "
            f"{reason}). Pass weights=PATH, or set ZOO_OFFLINE=1 to work from the cache only.") from None
    digests = verify_download(record.name, folder, listing)
    check_pins(record.name, locked, commit, digests)
    lock.record(record.name, f"hf://{w.hf}", w.revision, commit, folder, digests)
    return folder


def wanted(listing, patterns):
    """The files of a repository listing to download: those `patterns` names; else all, less the weights in other
    formats when the repository has safetensors."""
    if patterns is not None:
        return {path: f for path, f in listing.items() if path in patterns}
    if not any(path.endswith(".safetensors") for path in listing):
        return listing
    return {path: f for path, f in listing.items() if not path.lower().endswith(OTHER_FORMATS)}


def check_pins(name, locked, commit, digests):
    """Files of a commit someone else locked (zoo lock import) must be the same files here."""
    if not locked or locked.get("commit") != commit:
        return
    for path, expected in locked["files"].items():
        if digests.get(path) != expected["sha256"]:
            raise UnsafeWeights(f"{name}: {path} at commit {commit[:12]} differs from the sha256 in the lock; "
                                "the hub serves other files than were locked.")


def git_blob_id(path):
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def verify_download(name, folder, listing):
    """Every downloaded file must have the hash the hub declares (a bad one is removed from the cache);
    returns each file's sha256, for the lock."""
    digests = {}
    for path, entry in listing.items():
        local = folder / path
        digests[path] = file_digest(local)
        actual, expected = (digests[path], entry.lfs.sha256) if entry.lfs else (git_blob_id(local), entry.blob_id)
        if actual != expected:
            blob = local.resolve()
            local.unlink(missing_ok=True)
            blob.unlink(missing_ok=True)
            raise UnsafeWeights(f"{name}: the download of {path} is damaged or was tampered with (hash {actual[:12]}, "
                                f"the hub declares {expected[:12]}); it was removed. Pull again.")
    return digests
