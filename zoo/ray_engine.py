"""Bulk inference on a Ray cluster (pip install 'zoo[ray]'): Ray Data with one stateful predictor per worker.

The inputs become a Ray dataset of files and URLs; `map_batches` runs `EnginePredictor`, which loads the zoo model
once per actor (one GPU each when the cluster has GPUs, CPU actors otherwise), splits videos into frames where the model
reads images, and turns each batch into the same rows the local engine writes; Ray's own writers write them
(OUT is then a folder of files). The driver sends the model's record (and a builder registered in code) to
every worker, so workers load exactly the model the driver checked. `address` (or RAY_ADDRESS) connects to a
running cluster; without one, Ray starts a local cluster on this machine.
"""

import dataclasses
import itertools
import os
import shutil
import time
from pathlib import Path

from .bulk import Summary, make_row
from .errors import ZooError, require
from .files import as_path
from .outputs import check_fresh, check_table_model, csv_row, csv_schema, schema
from .sources import URL_PREFIXES, Item, sources_for
from .streaming import Failed

WRITERS = {".parquet": "write_parquet", ".jsonl": "write_json", ".csv": "write_csv"}
WRITTEN = {".parquet": ".parquet", ".jsonl": ".json", ".csv": ".csv"}  # the files Ray's writers name
ACTORS = 2  # Ray actors when concurrency is not given
CHUNK = 10_000  # inputs the driver holds at a time while handing them to Ray
BLOCK = 256  # inputs per Ray block at most: larger blocks halved the throughput of 2 CPU actors
FORWARDED_ENV = ("ZOO_", "HF_", "PYTHONPATH", "TRANSFORMERS_")  # settings every worker must share


class RayPredictor:
    """zoo in your own Ray Data pipeline: a stateful callable for `map_batches` that loads the model once per actor.

        ds = ray.data.read_images("photos/", include_paths=True)
        ds = ds.map_batches(zoo.RayPredictor, fn_constructor_kwargs={"model": "deit-tiny", "task": "classify"},
                            compute=ray.data.ActorPoolStrategy(size=2), batch_size=64)

    The batch's `column` holds images as Ray reads them (arrays from `read_images`, bytes from
    `read_binary_files`, {bytes, path} records from `from_huggingface`) or paths and URLs (text, kept in the
    output). Each row gains the columns a zoo bulk run writes (`predictions`, `embedding`, `text` or `detections`,
    with `task`, `model` and `error`: an image that cannot be read or run is its error, not the end of the job);
    the batch's other columns pass through.
    `options` are the call's options; the other keywords go to `zoo.load`. Batches as numpy (Ray's default) or pandas.
    """

    def __init__(self, model, task, *, column="image", options=None, **load):
        import zoo

        self.model, self.task, self.column = zoo.load(model, **load), task, column
        self.options = options or {}
        self.model.call_options(task, self.options)  # a bad option stops the actor at its start, not per batch

    def __call__(self, batch):
        import numpy as np
        import pyarrow as pa

        if self.column not in batch:
            raise ZooError(f"The batch has no column {self.column!r} (it has {', '.join(map(str, batch))}): "
                           "name the images' column with column=.")
        values = list(batch[self.column])
        table = pa.Table.from_pylist(self.rows([Item(v if isinstance(v, str) else None, v) for v in values]),
                                     schema=schema(self.task))
        images = any(not isinstance(v, str) for v in values)  # arrays and bytes are large: only their results stay
        table = table.drop_columns(["input", "frame_time"] if images else ["frame_time"])
        if not images:
            table = table.rename_columns([self.column if n == "input" else n for n in table.column_names])
        for name in batch:
            if name != self.column:
                column = np.asarray(batch[name])
                table = table.append_column(str(name), tensor_column(column) if column.ndim > 1 else pa.array(column))
        return table

    def rows(self, items):
        """The result rows of a batch of items, an error row for each input that cannot be read or run."""
        results = self.model.stream(self.task, [i.value for i in items], self.options, progress=False, keep_errors=True)
        return [make_row(self.model, self.task, item, result) for item, result in zip(items, results)]


def tensor_column(values):
    """A column of arrays as Ray itself stores one: its tensor extension type."""
    from ray.data.extensions import ArrowTensorArray

    return ArrowTensorArray.from_numpy(values)


class EnginePredictor(RayPredictor):
    """The ray engine's predictor: files and URLs in, the rows the local engine writes out."""

    def __init__(self, record, builder, task, load, options, sources, as_csv):
        from zoo.registry import register

        register(record, loader=builder, override=True)  # the driver's record, also one registered in its code
        super().__init__(record.name, task, options=options, **load)
        self.sources, self.as_csv = sources, as_csv  # CSV cells hold text: lists go as JSON, as the local engine writes

    def __call__(self, batch):
        import pyarrow as pa

        columns = (batch[name].to_pylist() for name in ("input", "value", "error"))
        rows = self.rows(list(itertools.chain.from_iterable(self.expand(*row) for row in zip(*columns))))
        if self.as_csv:
            return pa.Table.from_pylist([csv_row(row) for row in rows], schema=csv_schema(self.task))
        return pa.Table.from_pylist(rows, schema=schema(self.task))

    def expand(self, key, value, error):
        """A file or URL as the local engine reads it: a video is its frames unless the model reads video; an
        input the driver could not read (a bad path in a manifest) is its error row."""
        if error is not None:
            return [Item(key, Failed(error))]
        value = os.fsdecode(value)
        return self.sources.expand(value, 0) if value.startswith(URL_PREFIXES) else \
            self.sources.paths([Path(value)], keep_all=True)


def run_ray(name, inputs, *, task, out, resume, force, options, reading, address, concurrency, load, batch_size=64):
    from .api import RUNTIME_OPTIONS, check_options
    from .registry import registry

    ray = require("ray", "ray")
    import ray.data  # noqa: F401 (the submodule Ray Data lives in)

    if not isinstance(name, str):
        raise ZooError("The ray engine takes a model name: every Ray worker loads its own copy of the model.")
    check_options(name, task, {k: v for k, v in load.items() if k not in RUNTIME_OPTIONS}, options)
    out, record = target(out), registry().get(name)
    check_fresh(out, resume=resume, force=force)
    sources = sources_for(registry().loader_for(record).reads_video, **reading)
    earlier = output_files(out) if resume else []  # read once: what to skip; this run counts only its own files
    done = done_inputs(earlier, out, record.name)
    chunks = file_chunks(dataclasses.replace(sources, whole_videos=True).items(inputs))  # workers split videos
    first = next(chunks, [])  # an image in memory among the first inputs is refused before Ray starts
    start(ray, address)
    started = time.perf_counter()
    blocks, skipped = put_blocks(ray, itertools.chain([first], chunks), done, concurrency or ACTORS)  # old out stays
    if out.exists() and not resume:
        shutil.rmtree(out)
    if blocks:
        predictor = {"record": record, "builder": registry().builders.get(record.name), "task": task, "load": load,
                     "options": options, "sources": sources, "as_csv": out.suffix.lower() == ".csv"}
        write(ray, blocks, out, predictor, concurrency, batch_size)
    rows, failed = counts(sorted(set(output_files(out)) - set(earlier)))  # a video: a row a frame
    return Summary(done=rows - failed, failed=failed, skipped=skipped, seconds=time.perf_counter() - started,
                   out=str(out))


def file_chunks(items):
    """The inputs, CHUNK at a time: the driver never holds the whole list. Images in memory are refused: the driver
    would have to hold or ship them all before the first result, where a Ray reader streams them to the workers."""
    items = iter(items)
    while chunk := list(itertools.islice(items, CHUNK)):
        if image := next((i for i in chunk if not isinstance(i.value, (str, Path, Failed))), None):
            raise ZooError(f"{image.key} is an image the driver holds, and the ray engine hands its workers files "
                           "and URLs: run it with engine='local', or make a Ray dataset of the images (ray.data."
                           "read_parquet, from_huggingface, from_items, from_numpy) and map zoo.RayPredictor over it.")
        yield chunk


def put_blocks(ray, chunks, done, actors):
    """The inputs not done yet, as Arrow tables in Ray's object store, a chunk at a time. A chunk makes at least
    `actors` blocks, so a few inputs still keep every actor busy."""
    blocks, skipped = [], 0
    for chunk in chunks:
        todo = [i for i in chunk if i.key not in done]
        skipped += len(chunk) - len(todo)
        size = max(1, min(BLOCK, -(-len(todo) // actors)))
        for first in range(0, len(todo), size):
            blocks.append(ray.put(block(todo[first:first + size])))
    return blocks, skipped


def block(items):
    """Items as the table a Predictor reads: each input's key, its path or URL, or why the driver could not read it."""
    import pyarrow as pa

    failed = [i.value if isinstance(i.value, Failed) else None for i in items]
    return pa.table({"input": [i.key for i in items],  # the value as bytes: a file name need not be UTF-8
                     "value": [b"" if bad else os.fsencode(str(i.value)) for i, bad in zip(items, failed)],
                     "error": [bad and bad.error for bad in failed]},
                    schema=pa.schema([("input", pa.string()), ("value", pa.binary()), ("error", pa.string())]))


def target(out):
    out = as_path(out)
    if out.suffix.lower() not in WRITERS:
        raise ZooError(f"--out {out}: the ray engine writes {', '.join(WRITERS)} (a folder of files).")
    if out.is_file():
        raise ZooError(f"--out {out} is a file; the ray engine writes a folder of files there: choose another name.")
    written = WRITTEN[out.suffix.lower()]
    if out.is_dir() and any(p.is_dir() or p.suffix.lower() != written for p in out.iterdir()):
        raise ZooError(f"--out {out} is a folder holding other files than a ray run's {written} files, which a "
                       "new run would delete: choose another name.")
    return out


def start(ray, address):
    """Connect to the cluster at address/RAY_ADDRESS, or start a local one; workers get zoo's settings."""
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
    address = address or os.environ.get("RAY_ADDRESS") or None
    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING", runtime_env={"env_vars": env})


def write(ray, blocks, out, predictor, concurrency, batch_size):
    dataset = ray.data.from_arrow_refs(blocks).map_batches(
        EnginePredictor, fn_constructor_kwargs=predictor, batch_size=batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=concurrency or ACTORS), num_gpus=gpus_per_actor(ray, predictor["load"]))
    getattr(dataset, WRITERS[out.suffix.lower()])(str(out))


def gpus_per_actor(ray, load):
    """One GPU for each actor where the cluster has GPUs, unless the model is sent elsewhere (device='cpu'): the
    driver's own machine (a laptop, a CPU head node) says nothing about the workers'."""
    on_gpu = str(load.get("device") or "cuda").startswith("cuda")
    return 1 if on_gpu and ray.cluster_resources().get("GPU", 0) else 0


def output_files(out):
    """The files of a ray run's output folder (an empty one, a write cut short, holds no rows)."""
    return sorted(p for p in out.iterdir() if p.is_file() and not p.name.startswith(".") and p.stat().st_size) \
        if out.exists() else []


def written(files):
    """The input, model, frame_time and error columns of each of a ray run's files, a file at a time."""
    import pyarrow as pa

    columns = pa.schema([("input", pa.string()), ("model", pa.string()), ("frame_time", pa.float64()),
                         ("error", pa.string())])
    return (read_part(path, columns) for path in files)


def read_part(path, columns):
    """One file's columns of `columns`; a damaged file is one line (its inputs would run again)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".parquet":
            return pq.read_table(path, columns=columns.names).cast(columns)
        frame = pd.read_json(path, lines=True, dtype=False) if path.suffix == ".json" else \
            pd.read_csv(path, dtype={"input": str, "model": str, "error": str})
        frame = frame[columns.names].astype(object)
        return pa.Table.from_pandas(frame.where(frame.notna(), None), schema=columns, preserve_index=False)
    except Exception as e:  # pandas and pyarrow each fail their own way
        raise ZooError(f"{path} is not a readable part of a ray run's output ({type(e).__name__}: {str(e)[:100]}): "
                       "remove it (its inputs run again) or choose another --out.") from None


def done_inputs(files, out, model):
    """The files and URLs with a row in `files`, all of `model` (see check_model): a video frame's row names its
    video and time (clip.mp4#t=0.5)."""
    from .keyset import KeySet

    def keys():
        for table in written(files):
            check_table_model(out, table, model)
            times = table.column("frame_time").to_pylist()
            yield from (key.rpartition("#t=")[0] if time is not None else key
                        for key, time in zip(table.column("input").to_pylist(), times))

    return KeySet(keys())


def counts(files):
    """(rows, failed rows) written in `files`."""
    rows = failed = 0
    for table in written(files):
        errors = table.column("error").to_pylist()
        rows, failed = rows + len(errors), failed + sum(1 for e in errors if e not in (None, ""))
    return rows, failed
