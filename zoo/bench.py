"""zoo bench: accuracy and speed of any set of models on one dataset, side by side, kept in SQLite."""

import gc
import platform
import resource
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from . import api, results
from .datasets import get_dataset
from .errors import ZooError
from .evaluate import predict, score
from .probe import cached_features, knn_predict, linear_logits, train_linear

PROTOCOLS = ("auto", "head", "probe", "knn", "zero-shot")
LATENCY_RUNS = 20


class Table:
    """Benchmark rows: print it, save it (csv/json/md), or turn it into a pandas DataFrame."""

    def __init__(self, rows):
        self.rows = rows

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def __str__(self):
        from .tables import table

        columns = results.SUMMARY
        failures = [f"\n{r['model']}: FAILED: {r['error']}" for r in self.rows if r["status"] != "ok"]
        return table([[results.fmt(r.get(c), c) for c in columns] for r in self.rows],
                     [c.upper() for c in columns]) + "".join(failures)

    __repr__ = __str__  # what a REPL or notebook shows for zoo.compare(...): the table, as pandas shows a frame

    def to_pandas(self):
        from .errors import require

        return require("pandas", "pandas").DataFrame(self.rows)

    def save(self, path):
        from pathlib import Path

        results.export(self.rows, Path(path).suffix.lstrip(".") or "csv", path)


def choose_protocol(model, classes, requested):
    """The model's natural route to the dataset's labels, or the requested one when it can take it."""
    own = set(model.labels or ())
    open_vocab = model.open_vocabulary
    routes = []
    if model.supports("classify") and own >= set(classes) and not open_vocab:
        routes.append("head")
    if model.supports("classify") and open_vocab:
        routes.append("zero-shot")
    if model.supports("embed"):
        routes += ["probe", "knn"]
    if requested == "auto":
        if not routes:
            raise ZooError(f"{model.name} has no route to these labels: it cannot classify them or embed images.")
        return routes[0]
    if requested not in routes:
        raise ZooError(f"{model.name} cannot be benchmarked with --protocol {requested}; it supports: "
                       f"{', '.join(routes) or 'none'}.")
    return requested


def evaluate_model(model, protocol, data, train_split, *, progress):
    """(top-5 class predictions per test image, seconds spent predicting them)."""
    if protocol in ("head", "zero-shot"):
        started = time.perf_counter()
        labels = list(data.classes) if protocol == "zero-shot" else None
        predictions = predict(model, data, labels=labels, progress=progress)
        return predictions, time.perf_counter() - started
    train = train_split()
    train_f = cached_features(model, train, progress=progress)
    started = time.perf_counter()
    test_f = model.embed(data.items, progress=progress)
    elapsed = time.perf_counter() - started
    if protocol == "probe":
        scores = linear_logits(train_linear(train_f, train.targets, len(train.classes)), test_f)
    else:
        scores = knn_predict(train_f, train.targets, test_f, len(train.classes))
    return scores.topk(min(5, scores.shape[1]), dim=1).indices.tolist(), elapsed


def latency_ms(model, protocol, item, classes, runs=LATENCY_RUNS):
    """p50 and p95 of single-image calls on the protocol's route, after one warm-up call."""
    import numpy as np

    labels = list(classes) if protocol == "zero-shot" else None
    if protocol in ("probe", "knn"):
        call = lambda: model.embed([item])  # noqa: E731
    else:
        call = lambda: model.classify([item], top_k=1, labels=labels)  # noqa: E731
    call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def reset_peak_memory():
    """Start each model's peak afresh, so a model benchmarked after a larger one reports its own: CUDA's counters,
    and on Linux the process's peak resident size (after the freed memory of the model before goes back)."""
    import torch

    from .streaming import release_free_memory

    gc.collect()  # the model before, if it sits in a reference cycle
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    release_free_memory(every_s=0)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets the peak RSS to the current RSS
    except OSError:
        pass  # elsewhere the peak stays the process's since it started


def peak_memory_mb(device):
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the peak RSS since the reset (Linux: KiB)


def versions():
    import importlib.metadata as md

    found = {"python": platform.python_version()}
    for package in ("zoo", "torch", "timm", "transformers"):
        try:
            found[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    return found


def bench_one(name, data, train_split, *, protocol, batch_size, device, dtype, progress):
    reset_peak_memory()
    started = time.perf_counter()
    model = api.load(name, device=device, dtype=dtype, batch_size=batch_size)
    load_time = time.perf_counter() - started
    route = choose_protocol(model, data.classes, protocol)
    predictions, seconds = evaluate_model(model, route, data, train_split, progress=progress)
    p50, p95 = latency_ms(model, route, data.items[0], data.classes)
    return {
        **score(predictions, data.targets, data.classes), "protocol": route, "status": "ok",
        "throughput": len(data) / seconds, "latency_p50_ms": p50, "latency_p95_ms": p95,
        "peak_memory_mb": peak_memory_mb(model.device), "params": model.param_count(), "load_time_s": load_time,
        "device": str(model.device), "dtype": str(model.dtype).replace("torch.", ""),
        "attention": model.attention, "batch_size": model.batch_size,
    }


def compare(models, *, dataset="cifar10", data_root=None, split="test", limit=None, protocol="auto", batch_size=None,
            device=None, dtype=None, seed=0, db=None, progress=False, train_limit=5000):
    """Benchmark each model on one dataset; every finished row is saved before the next model starts."""
    if protocol not in PROTOCOLS:
        raise ZooError(f"Unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}.")
    models = [models] if isinstance(models, str) else list(models)  # one name, not its letters
    if not models:
        raise ZooError("Name at least one model to benchmark.")
    for name in models:
        api.info(name)  # unknown names fail before any work
    results.check_writable(db)  # so does a results database that could not keep the rows
    data = get_dataset(dataset, data_root, split).subset(limit, seed)
    loaded = {}

    def train_split():
        """The training images for probes and k-NN, read once and only when a model needs them."""
        if "train" not in loaded:
            loaded["train"] = get_dataset(dataset, data_root, "train").subset(train_limit, seed)
        if "all" in (loaded["train"].split, data.split):
            raise ZooError(f"{data.name} has no separate training images: a probe or k-NN trained on the test "
                           "images would grade itself. Use ROOT/train/<class>/ and ROOT/test/<class>/ folders.")
        return loaded["train"]

    run_id, rows = uuid.uuid4().hex[:12], []
    for name in models:
        base = {"run_id": run_id, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "model": name, "dataset": data.name, "split": data.split, "n": len(data), "limit_n": limit,
                "seed": seed, "versions": versions()}
        try:
            row = {**base, **bench_one(name, data, train_split, protocol=protocol, batch_size=batch_size, device=device,
                                       dtype=dtype, progress=progress)}
        except Exception as e:  # a failing model gets a row with the reason; the others still run
            row = {**base, "status": "failed", "error": f"{type(e).__name__}: {e}"}
        results.save_row(row, db)
        rows.append(row)
    return Table(rows)

