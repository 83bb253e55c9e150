"""Result rows to files: .jsonl, .csv, .parquet for every task; .npy and .safetensors (with an index) for embeddings.

While a run goes, every chunk of rows is a complete Parquet file in OUT.parts/ (pandas and pyarrow read the
folder as one table), so a killed run keeps everything up to its last chunk and `--resume` knows what is done.
Closing turns the parts into OUT in one atomic rename.
"""

import json
import shutil
from dataclasses import dataclass

from .errors import ZooError
from .files import as_path, atomic_path
from .records import TASKS

FORMATS = (".jsonl", ".csv", ".parquet", ".npy", ".safetensors")
EMBEDDING_ONLY = (".npy", ".safetensors")
LIST_COLUMNS = ("predictions", "detections", "embedding")  # JSON in a CSV cell


def schema(task):
    import pyarrow as pa

    prediction = pa.struct([("label", pa.string()), ("index", pa.int64()), ("score", pa.float64())])
    detection = pa.struct([("box", pa.list_(pa.float64())), ("label", pa.string()), ("score", pa.float64()),
                           ("polygons", pa.list_(pa.list_(pa.float64())))])
    result = {"classify": ("predictions", pa.list_(prediction)), "detect": ("detections", pa.list_(detection)),
              "describe": ("text", pa.string()), "embed": ("embedding", pa.list_(pa.float32()))}[task]
    return pa.schema([("input", pa.string()), ("task", pa.string()), ("model", pa.string()),
                      ("frame_time", pa.float64()), result, ("error", pa.string())])


def csv_schema(task):
    """The task's schema as CSV holds it: a list column (predictions, detections, embedding) as JSON text."""
    import pyarrow as pa

    return pa.schema([pa.field(f.name, pa.string()) if f.name in LIST_COLUMNS else f for f in schema(task)])


def csv_row(row):
    return {k: json.dumps(v) if k in LIST_COLUMNS and v is not None else v for k, v in row.items()}


def check_out(path, task):
    path = as_path(path)
    if path.suffix.lower() not in FORMATS:
        raise ZooError(f"--out {path}: use a file name ending in {', '.join(FORMATS)}.")
    if path.suffix.lower() in EMBEDDING_ONLY and task != "embed":
        raise ZooError(f"--out {path}: {path.suffix} holds embeddings; write {task} results to .jsonl, .csv or .parquet.")
    return path


def check_fresh(path, *, resume, force):
    """Results already written are never replaced unless asked: a finished OUT, or the parts a killed run left."""
    if resume and force:
        raise ZooError("--resume keeps what --out holds and --force replaces it: pass one of them.")
    if resume or force:
        return
    if any(path.with_name(path.name + ".parts").glob("part-*.parquet")):
        raise ZooError(f"{path}.parts holds the rows of an interrupted run: pass --resume to finish it, --force to "
                       "start afresh, or choose another --out.")
    if path.is_file() or path.is_dir():  # a device or pipe gets its own refusal
        raise ZooError(f"{path} holds results already: pass --resume to add only what it lacks, --force to replace "
                       "it, or choose another --out.")


class Writer:
    """`model`'s rows into OUT.parts/ chunk by chunk, then OUT. Used as a context manager, which holds OUT's lock:
    one run at a time writes OUT, a second is refused."""

    def __init__(self, path, task, model, *, resume=False):
        from filelock import FileLock

        from .files import check_writable

        self.path, self.task, self.model, self.resume = check_out(path, task), task, model, resume
        self.parts = self.path.with_name(self.path.name + ".parts")
        check_writable(self.path)  # and so its parts folder beside it
        self.lock = FileLock(str(self.path.with_name(f".{self.path.name}.lock")))

    def __enter__(self):
        from filelock import Timeout

        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            raise ZooError(f"Another run is writing {self.path} now: wait for it to finish, or choose another "
                           "--out.") from None
        try:
            if self.parts.exists() and not self.resume:
                shutil.rmtree(self.parts)  # an earlier run's leftovers: this run starts afresh
            if self.resume and self.path.exists() and not self.part_files():
                self.resume_finished()
        except BaseException:
            self.lock.release()
            raise
        return self

    def resume_finished(self):
        """A finished output's rows become the parts this run appends to; a file that is not zoo's results
        leaves no parts behind (they would replace it)."""
        try:
            for rows in read_chunks(self.path, self.task, self.model):
                self.write(rows)
        except BaseException:
            shutil.rmtree(self.parts, ignore_errors=True)
            raise

    def __exit__(self, *error):
        self.lock.release()

    def check_resumable(self):
        """Before a model loads: the first rows that --resume would append to are this task's and model's."""
        if self.part_files():
            next(self.written_inputs(), None)
        elif self.path.exists():
            next(read_chunks(self.path, self.task, self.model), None)

    def done(self):
        """The inputs already written (by earlier runs that --resume continues), read a part at a time."""
        from .keyset import KeySet

        return KeySet(self.written_inputs())

    def written_inputs(self):
        import pyarrow.parquet as pq

        for part in self.part_files():
            table = pq.read_table(part, columns=["input", "model"])
            check_table_model(self.parts, table, self.model)
            yield from table.column("input").to_pylist()

    def part_files(self):
        return sorted(self.parts.glob("part-*.parquet")) if self.parts.exists() else []

    def write(self, rows):
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not rows:
            return
        self.parts.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.parts / f"part-{len(self.part_files()):06d}.parquet") as tmp:
            pq.write_table(pa.Table.from_pylist(rows, schema=schema(self.task)), tmp)

    def close(self):
        """Turn the parts into the output file, atomically, reading one part at a time."""
        with atomic_path(self.path) as tmp:
            WRITE[self.path.suffix.lower()](Parts(self.part_files(), self.task), tmp, self.path)
        shutil.rmtree(self.parts, ignore_errors=True)


@dataclass(frozen=True)
class Parts:
    """A run's chunks, read one at a time (closing a long run holds one chunk, not every row); re-iterable."""

    files: list
    task: str

    def __iter__(self):
        import pyarrow.parquet as pq

        if not self.files:
            yield schema(self.task).empty_table()
        for path in self.files:
            yield pq.read_table(path)

    def column(self, name):
        import pyarrow.parquet as pq

        for path in self.files:
            yield pq.read_table(path, columns=[name]).column(0)

    def rows(self):
        for table in self:
            yield from table.to_pylist()

    def index(self):
        """{input, model, frame_time, error} for every row: what embedding files keep beside the vectors."""
        import pyarrow.parquet as pq

        for path in self.files:
            yield from pq.read_table(path, columns=["input", "model", "frame_time", "error"]).to_pylist()


def write_jsonl(parts, path, final):
    with open(path, "w") as f:
        for row in parts.rows():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_csv(parts, path, final):
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=schema(parts.task).names)
        writer.writeheader()
        for row in parts.rows():
            writer.writerow(csv_row(row))


def write_parquet(parts, path, final):
    import pyarrow.parquet as pq

    target = parquet_schema(parts)
    with pq.ParquetWriter(path, target) as writer:
        for table in parts:
            writer.write_table(table.cast(target))


def parquet_schema(parts):
    """Embeddings as a fixed-size list column when every input has one of the same length; with error rows,
    a list column with nulls in their place (pyarrow before 26 cannot write or read nulls in a fixed-size list)."""
    import pyarrow as pa

    target = schema(parts.task)
    if parts.task != "embed":
        return target
    _, missing, sizes = embedding_shape(parts)
    if missing or len(sizes) != 1:
        return target
    return target.set(target.get_field_index("embedding"), pa.field("embedding", pa.list_(pa.float32(), sizes.pop())))


def embedding_shape(parts):
    """(rows with an embedding, rows without one, the set of their lengths), from the embedding column alone."""
    import pyarrow.compute as pc

    count, missing, sizes = 0, 0, set()
    for column in parts.column("embedding"):
        good = column.drop_null()
        count, missing = count + len(good), missing + column.null_count
        sizes.update(pc.list_value_length(good).unique().to_pylist())
    return count, missing, sizes


def embedding_matrix(parts, allocate):
    """The embeddings of the inputs that worked, a row each, filled part by part into allocate((rows, dim))."""
    import pyarrow.compute as pc

    count, _, sizes = embedding_shape(parts)
    if len(sizes) > 1:
        raise ZooError(f"The embeddings have different lengths ({sorted(sizes)}), so they make no matrix: write "
                       ".parquet or .jsonl.")
    matrix, offset = allocate((count, sizes.pop() if sizes else 0)), 0
    for column in parts.column("embedding"):
        good = column.drop_null()
        if len(good):
            matrix[offset:offset + len(good)] = pc.list_flatten(good).to_numpy().reshape(len(good), -1)
            offset += len(good)
    return matrix


def write_npy(parts, path, final):
    """The vectors in FINAL (written straight to disk), the index of every input, errors included, in FINAL
    with .index.json."""
    import numpy as np

    matrix = embedding_matrix(parts, lambda shape: np.lib.format.open_memmap(path, "w+", np.float32, shape))
    matrix.flush()
    del matrix
    write_index(final, parts.index())


def write_index(final, entries):
    """A JSON list, written an entry at a time."""
    with atomic_path(final.with_suffix(".index.json")) as tmp, open(tmp, "w") as f:
        f.write("[")
        for n, entry in enumerate(entries):
            f.write(("," if n else "") + json.dumps(entry, ensure_ascii=False))
        f.write("]")


SAFETENSORS_METADATA_BYTES = 64 * 2**20  # safetensors refuses a header over 100 MB; past this the index goes beside


def write_safetensors(parts, path, final):
    """The vectors, with the index in the metadata (or, for a very long run, in FINAL with .index.json)."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    matrix = embedding_matrix(parts, lambda shape: np.empty(shape, np.float32))
    index = list(parts.index())
    metadata = {"inputs": json.dumps([i["input"] for i in index if i["error"] is None], ensure_ascii=False),
                "index": json.dumps(index, ensure_ascii=False)}
    if sum(len(v.encode()) for v in metadata.values()) > SAFETENSORS_METADATA_BYTES:
        write_index(final, index)
        metadata = {"index_file": final.with_suffix(".index.json").name}
    save_file({"embeddings": torch.from_numpy(matrix)}, str(path), metadata=metadata)


WRITE = {".jsonl": write_jsonl, ".csv": write_csv, ".parquet": write_parquet, ".npy": write_npy,
         ".safetensors": write_safetensors}


RESUME_ROWS = 4096  # rows of a finished output turned into a part at a time, when a run resumes it


def read_chunks(path, task, model):
    """The rows of a finished output in lists of RESUME_ROWS, to resume it (embedding files keep only their
    index and vectors); a file that is not zoo's `task` results of `model` is one line."""
    try:
        for chunk in _read_chunks(path, task):
            yield [resumed_row(path, row, task, model) for row in chunk]
    except ZooError:
        raise
    except Exception as e:  # json, csv, pyarrow, numpy and safetensors each fail their own way
        first = str(e).split(". ")[0][:100]  # numpy's second sentence suggests unpickling
        raise ZooError(f"--resume: {path} is not a zoo results file ({type(e).__name__}: {first}). "
                       "Choose another --out, or leave out --resume to replace it.") from None


def resumed_row(path, row, task, model):
    other = row.get("task") if isinstance(row, dict) else None
    if other in TASKS and other != task:
        raise ZooError(f"--resume: {path} holds {other} results, not {task}. Choose another --out, or leave out "
                       "--resume to replace it.")
    if not (isinstance(row, dict) and isinstance(row.get("input"), str) and row.get("task") == task):
        raise ZooError(f"--resume: {path} holds a row that is not one of zoo's {task} results ({str(row)[:80]}). "
                       "Choose another --out, or leave out --resume to replace it.")
    check_model(path, [row.get("model")], model)
    return row


def check_model(path, models, model):
    """Rows of another model in what --resume appends to would make one output of two models' results; rows that
    name no model (written by hand) pass."""
    other = next((m for m in models if m not in (None, model)), None)
    if other is not None:
        raise ZooError(f"--resume: {path} holds results of {other}, not {model}. Resume with {other}, choose another "
                       "--out, or leave out --resume to replace it.")


def check_table_model(path, table, model):
    """check_model over an Arrow table's model column."""
    check_model(path, table.column("model").unique().to_pylist(), model)


def _read_chunks(path, task):
    from .streaming import chunks

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return (batch.to_pylist() for batch in pq.ParquetFile(path).iter_batches(batch_size=RESUME_ROWS))
    rows = {".jsonl": read_jsonl, ".csv": read_csv}.get(suffix, read_embeddings)(path, task)
    return chunks(rows, lambda: RESUME_ROWS)


def read_jsonl(path, task):
    with open(path) as f:
        yield from (json.loads(line) for line in f if line.strip())


def read_csv(path, task):
    import csv

    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames and reader.fieldnames != schema(task).names:
            raise ValueError(f"its columns are {', '.join(reader.fieldnames)[:60]}, not zoo's")
        yield from (decode_csv_row(row) for row in reader)


def decode_csv_row(row):
    decoded = {k: (json.loads(v) if k in LIST_COLUMNS and v else v or None) for k, v in row.items()}
    decoded["frame_time"] = float(decoded["frame_time"]) if decoded.get("frame_time") else None
    return decoded


def read_embeddings(path, task):
    import numpy as np

    if path.suffix.lower() == ".npy":
        vectors, metadata = np.load(path, mmap_mode="r"), {}
    else:
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            vectors, metadata = f.get_tensor("embeddings"), f.metadata()
    index = json.loads(metadata.get("index") or path.with_suffix(".index.json").read_text())
    good = iter(vectors)
    for entry in index:
        yield {**entry, "task": task, "embedding": None if entry["error"] else next(good).tolist()}
