"""Bulk inference on a Ray cluster (pip install 'zoo[ray]'): Ray Data with one stateful predictor per worker.

The inputs become a Ray dataset; `map_batches` runs `Predictor`, which loads the zoo model once per actor
(one GPU each on GPU machines, CPU actors otherwise) and turns each batch into the same rows the local engine
writes; Ray's own writers write them (OUT is then a folder of files). `address` (or RAY_ADDRESS) connects to
a running cluster; without one, Ray starts a local cluster on this machine.
"""

import os
import shutil
import time
from pathlib import Path

from .bulk import Summary, make_row
from .errors import ZooError, require
from .outputs import schema
from .sources import Item, Sources

WRITERS = {".parquet": "write_parquet", ".jsonl": "write_json", ".csv": "write_csv"}
FORWARDED_ENV = ("ZOO_", "HF_", "PYTHONPATH", "TRANSFORMERS_")  # settings every worker must share


class Predictor:
    """Loads the model once per Ray actor; each call turns a batch of inputs into result rows."""

    def __init__(self, name, task, load, options):
        import zoo

        self.model, self.task, self.options = zoo.load(name, **load), task, options

    def __call__(self, batch):
        import pyarrow as pa

        items = [Item(k, v, t) for k, v, t in zip(*(batch[c].to_pylist() for c in ("input", "value", "frame_time")))]
        results = self.model.stream(self.task, [i.value for i in items], self.options, progress=False, keep_errors=True)
        rows = [make_row(self.model, self.task, item, result) for item, result in zip(items, results)]
        return pa.Table.from_pylist(rows, schema=schema(self.task))


def run_ray(name, inputs, *, task, out, resume, options, sources, address, concurrency, load, batch_size=64):
    from .api import RUNTIME_OPTIONS, check_options
    from .registry import registry

    ray = require("ray", "ray")
    import ray.data  # noqa: F401 (the submodule Ray Data lives in)

    if not isinstance(name, str):
        raise ZooError("The ray engine takes a model name: every Ray worker loads its own copy of the model.")
    check_options(name, task, {k: v for k, v in load.items() if k not in RUNTIME_OPTIONS}, options)
    out = target(out)
    loader = registry().loader_for(registry().get(name))
    items = [i for i in (sources or Sources(whole_videos=loader.reads_video)).items(inputs)]
    if any(i.frame_time is not None or not isinstance(i.value, (str, Path)) for i in items):
        raise ZooError("The ray engine reads files, URLs, folders and manifests; split videos into frames "
                       "with the local engine (--engine local).")
    done = written_keys(out) if resume else set()
    if out.exists() and not resume:
        shutil.rmtree(out)
    start(ray, address)
    started = time.perf_counter()
    rows = [{"input": i.key, "value": str(i.value), "frame_time": None} for i in items if i.key not in done]
    summary = Summary(skipped=len(items) - len(rows), out=str(out))
    if rows:
        write(ray, rows, out, name, task, load, options, concurrency, batch_size)
    failed = errors_in(out, {r["input"] for r in rows})
    summary.failed, summary.done, summary.seconds = failed, len(rows) - failed, time.perf_counter() - started
    return summary


def target(out):
    out = Path(out)
    if out.suffix.lower() not in WRITERS:
        raise ZooError(f"--out {out}: the ray engine writes {', '.join(WRITERS)} (a folder of files).")
    return out


def start(ray, address):
    """Connect to the cluster at address/RAY_ADDRESS, or start a local one; workers get zoo's settings."""
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
    address = address or os.environ.get("RAY_ADDRESS") or None
    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING", runtime_env={"env_vars": env})


def write(ray, rows, out, name, task, load, options, concurrency, batch_size):
    import torch

    dataset = ray.data.from_items(rows).map_batches(
        Predictor, fn_constructor_kwargs={"name": name, "task": task, "load": load, "options": options},
        batch_size=batch_size, batch_format="pyarrow", concurrency=concurrency,
        num_gpus=1 if torch.cuda.is_available() else 0)
    getattr(dataset, WRITERS[out.suffix.lower()])(str(out))


def read(out):
    """The rows written so far (Ray writes a folder of files)."""
    import pyarrow as pa

    if not out.exists():
        return pa.table({"input": pa.array([], pa.string()), "error": pa.array([], pa.string())})
    if out.suffix.lower() == ".parquet":
        import pyarrow.dataset as ds

        return ds.dataset(str(out), format="parquet").to_table(columns=["input", "error"])
    import pandas as pd

    files = sorted(p for p in out.iterdir() if p.is_file() and not p.name.startswith("."))
    reader = (lambda p: pd.read_json(p, lines=True)) if out.suffix.lower() == ".jsonl" else pd.read_csv
    frame = pd.concat([reader(p)[["input", "error"]] for p in files]) if files else pd.DataFrame(columns=["input", "error"])
    return pa.Table.from_pandas(frame.astype(object).where(frame.notna(), None), preserve_index=False)


def written_keys(out):
    return set(read(out).column("input").to_pylist())


def errors_in(out, keys):
    table = read(out).to_pylist()
    return sum(1 for row in table if row["input"] in keys and row["error"] not in (None, ""))
