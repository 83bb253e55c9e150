"""Bulk inference: any model over files, folders, manifests and videos, into a results file.

    zoo.run("deit-tiny", "photos/", task="classify", out="preds.parquet", recursive=True)

Inputs stream through the model's bounded prefetch pipeline (decoding in threads, overlapping compute), so
memory stays flat in the number of inputs. An input that fails becomes an error row with a one-line reason
and the run goes on. Rows are written in chunks; `resume=True` skips what an earlier run wrote.
"""

import collections
import dataclasses
import sys
import time
from dataclasses import dataclass

from .errors import ZooError
from .model import Failed, Model
from .outputs import Writer, check_fresh, check_out
from .sources import Item, sources_for

CHUNK_ROWS = 256  # rows per written chunk: what a killed run loses at most


@dataclass
class Summary:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    out: str | None = None

    def __str__(self):
        rate = (self.done + self.failed) / self.seconds if self.seconds else 0.0
        where = f" -> {self.out}" if self.out else ""
        return f"done {self.done}, failed {self.failed}, skipped {self.skipped} ({rate:.1f} inputs/s){where}"


def run(model, inputs, *, task, out, resume=False, force=False, options=None, recursive=False, extensions=None,
        column="path", fps=None, progress=None, engine="local", address=None, concurrency=None, load=None):
    """Run `task` over every input into `out` (.jsonl, .csv, .parquet; embeddings also .npy, .safetensors).

    `inputs` is one input or a list or iterator of them: paths, folders, globs, lists, manifests, videos, URLs, and
    (local engine) images in memory. `model` is a name or a loaded model (the ray engine takes a name; `load` holds
    zoo.load's arguments).
    An `out` that holds results already is refused unless `resume` (skip what it holds, add the rest) or `force`
    (replace it). `options` are the call's (top_k, prompt, ...). How inputs are read: `recursive` walks into sub-folders,
    `extensions` ('jpg,png' or a list) are what folders and globs keep, `column` names the paths of a CSV/Parquet
    manifest, `fps` samples videos for image models (1.0; models that read video get them whole).
    """
    from . import api

    reading = {"recursive": recursive, "extensions": extensions, "column": column, "fps": fps}
    if engine == "ray":
        from .ray_engine import run_ray

        return run_ray(model, inputs, task=task, out=out, resume=resume, force=force, options=options or {},
                       reading=reading, address=address, concurrency=concurrency, load=load or {})
    if engine != "local":
        raise ZooError(f"Unknown engine {engine!r}: use local or ray.")
    if address is not None or concurrency is not None:
        raise ZooError("address and concurrency are the ray engine's: pass engine='ray', or leave them out.")
    if isinstance(model, Model) and load:
        raise ZooError("load= holds zoo.load's arguments for a model name; this model is loaded already.")
    check_fresh(check_out(out, task), resume=resume, force=force)  # before a model loads
    if resume:
        name = model.name if isinstance(model, Model) else api.info(model).name
        Writer(out, task, name, resume=True).check_resumable()
    sources = sources_for(False, **reading)
    model = model if isinstance(model, Model) else api.load(model, **(load or {}))
    return run_local(model, inputs, task=task, out=out, resume=resume, options=options or {},
                     sources=dataclasses.replace(sources, whole_videos=model.reads_video), progress=progress)


def run_local(model, inputs, *, task, out, resume, options, sources, progress):
    model.call_options(task, options)  # a bad option fails before anything is read or written
    with Writer(out, task, model.name, resume=resume) as writer:
        summary, started = Summary(out=str(out)), time.perf_counter()
        write_rows(model, task, sources, inputs, options, writer, summary, progress)
        writer.close()
    summary.seconds = time.perf_counter() - started
    return summary


def write_rows(model, task, sources, inputs, options, writer, summary, progress):
    """Every input not written yet, through the model, into the writer in chunks."""
    from tqdm import tqdm

    done, total = writer.done(), sources.count(inputs)
    show = progress if progress is not None else sys.stderr.isatty()
    chunk = []
    with tqdm(total=total and total - len(done), desc=f"{model.name} {task}", unit="input", disable=not show) as bar:
        for item, result in paired(model, task, sources.items(inputs), done, options, summary):
            chunk.append(make_row(model, task, item, result))
            summary.done += not isinstance(result, Failed)
            summary.failed += isinstance(result, Failed)
            bar.update(1)
            if len(chunk) >= CHUNK_ROWS:
                writer.write(chunk)
                chunk = []
    writer.write(chunk)


def paired(model, task, items, done, options, summary, keep_values=False):
    """(item, result) for every item not done, in order; items are read lazily by the model's prefetch thread.
    Items waiting for their results keep only their names unless `keep_values`: a video frame's pixels would
    wait too, as many as the prefetch holds (a thousand 1080p frames are 6 GB)."""
    pending = collections.deque()

    def values():
        for item in items:
            if item.key in done:
                summary.skipped += 1
                continue
            pending.append(item if keep_values else dataclasses.replace(item, value=None))
            yield item.value

    stream = model.stream(task, values(), options, progress=False, keep_errors=True)
    for result in stream:
        yield pending.popleft(), result


def make_row(model, task, item: Item, result):
    row = {"input": item.key, "task": task, "model": model.name, "frame_time": item.frame_time, "error": None}
    if isinstance(result, Failed):
        return {**row, "error": result.error}
    if task == "classify":
        return {**row, "predictions": [p.to_dict() for p in result]}
    if task == "detect":
        return {**row, "detections": [d.to_dict() for d in result]}
    if task == "describe":
        return {**row, "text": result}
    return {**row, "embedding": result.flatten().tolist()}

