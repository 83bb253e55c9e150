"""Result rows to files: .jsonl, .csv, .parquet for every task; .npy and .safetensors (with an index) for embeddings.

While a run goes, every chunk of rows is a complete Parquet file in OUT.parts/ (pandas and pyarrow read the
folder as one table), so a killed run keeps everything up to its last chunk and `--resume` knows what is done.
Closing turns the parts into OUT in one atomic rename.
"""

import json
import shutil
from pathlib import Path

from .errors import ZooError
from .files import atomic_path

FORMATS = (".jsonl", ".csv", ".parquet", ".npy", ".safetensors")
EMBEDDING_ONLY = (".npy", ".safetensors")


def schema(task):
    import pyarrow as pa

    prediction = pa.struct([("label", pa.string()), ("index", pa.int64()), ("score", pa.float64())])
    detection = pa.struct([("box", pa.list_(pa.float64())), ("label", pa.string()), ("score", pa.float64()),
                           ("polygons", pa.list_(pa.list_(pa.float64())))])
    result = {"classify": ("predictions", pa.list_(prediction)), "detect": ("detections", pa.list_(detection)),
              "describe": ("text", pa.string()), "embed": ("embedding", pa.list_(pa.float32()))}[task]
    return pa.schema([("input", pa.string()), ("task", pa.string()), ("model", pa.string()),
                      ("frame_time", pa.float64()), result, ("error", pa.string())])


def check_out(path, task):
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ZooError(f"--out {path}: use a file name ending in {', '.join(FORMATS)}.")
    if path.suffix.lower() in EMBEDDING_ONLY and task != "embed":
        raise ZooError(f"--out {path}: {path.suffix} holds embeddings; write {task} results to .jsonl, .csv or .parquet.")
    return path


class Writer:
    """Rows into OUT.parts/ chunk by chunk, then OUT. Used as a context manager, which holds OUT's lock: one run
    at a time writes OUT, a second is refused."""

    def __init__(self, path, task, *, resume=False):
        from filelock import FileLock

        from .files import check_writable

        self.path, self.task, self.resume = check_out(path, task), task, resume
        self.parts = self.path.with_name(self.path.name + ".parts")
        check_writable(self.parts / "part.check")
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
                self.write(read_rows(self.path, self.task))  # a finished output: resuming appends to it
        except BaseException:
            self.lock.release()
            raise
        return self

    def __exit__(self, *error):
        self.lock.release()

    def done(self):
        """The inputs already written (by earlier runs that --resume continues)."""
        import pyarrow.parquet as pq

        return {key for part in self.part_files() for key in pq.read_table(part, columns=["input"]).column(0).to_pylist()}

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
        """Turn the parts into the output file, atomically; returns the number of rows."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = self.part_files()
        table = pa.concat_tables([pq.read_table(p) for p in parts]) if parts else schema(self.task).empty_table()
        with atomic_path(self.path) as tmp:
            WRITE[self.path.suffix.lower()](table, tmp, self.path)
        shutil.rmtree(self.parts, ignore_errors=True)
        return table.num_rows


def write_jsonl(table, path, final):
    with open(path, "w") as f:
        for row in table.to_pylist():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_csv(table, path, final):
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=table.column_names)
        writer.writeheader()
        for row in table.to_pylist():
            writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()})


def write_parquet(table, path, final):
    """Embeddings as a fixed-size list column when every input has one of the same length; with error rows,
    a list column with nulls in their place (pyarrow before 26 cannot write or read nulls in a fixed-size list)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if "embedding" in table.column_names and table.column("embedding").null_count == 0:
        sizes = set(pc.list_value_length(table.column("embedding")).unique().to_pylist())
        if len(sizes) == 1:
            index = table.column_names.index("embedding")
            table = table.set_column(index, "embedding", table.column("embedding").cast(pa.list_(pa.float32(), sizes.pop())))
    pq.write_table(table, path)


def embedding_arrays(table):
    """(rows x dim float32 array of the inputs that worked, the index: [{input, frame_time, error}] of every row)."""
    import numpy as np

    rows = table.to_pylist()
    good = [r["embedding"] for r in rows if r["error"] is None]
    array = np.asarray(good, dtype=np.float32) if good else np.zeros((0, 0), np.float32)
    index = [{"input": r["input"], "model": r["model"], "frame_time": r["frame_time"], "error": r["error"]}
             for r in rows]
    return array, index


def write_npy(table, path, final):
    """The vectors in FINAL, the index of every input (errors included) in FINAL with .index.json."""
    import numpy as np

    array, index = embedding_arrays(table)
    with open(path, "wb") as f:
        np.save(f, array)
    write_index(final, index)


def write_index(final, index):
    with atomic_path(final.with_suffix(".index.json")) as tmp:
        tmp.write_text(json.dumps(index, ensure_ascii=False))


SAFETENSORS_METADATA_BYTES = 64 * 2**20  # safetensors refuses a header over 100 MB; past this the index goes beside


def write_safetensors(table, path, final):
    """The vectors, with the index in the metadata (or, for a very long run, in FINAL with .index.json)."""
    import torch
    from safetensors.torch import save_file

    array, index = embedding_arrays(table)
    metadata = {"inputs": json.dumps([i["input"] for i in index if i["error"] is None], ensure_ascii=False),
                "index": json.dumps(index, ensure_ascii=False)}
    if sum(len(v.encode()) for v in metadata.values()) > SAFETENSORS_METADATA_BYTES:
        write_index(final, index)
        metadata = {"index_file": final.with_suffix(".index.json").name}
    save_file({"embeddings": torch.from_numpy(array).contiguous()}, str(path), metadata=metadata)


WRITE = {".jsonl": write_jsonl, ".csv": write_csv, ".parquet": write_parquet, ".npy": write_npy,
         ".safetensors": write_safetensors}


def read_rows(path, task):
    """The rows of a finished output, to resume it (embedding files keep only their index and vectors)."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if suffix == ".csv":
        import csv

        with open(path, newline="") as f:
            return [decode_csv_row(row) for row in csv.DictReader(f)]
    return read_embeddings(path, task)


LIST_COLUMNS = ("predictions", "detections", "embedding")  # JSON in a CSV cell


def decode_csv_row(row):
    decoded = {k: (json.loads(v) if k in LIST_COLUMNS and v else v or None) for k, v in row.items()}
    decoded["frame_time"] = float(decoded["frame_time"]) if decoded.get("frame_time") else None
    return decoded


def read_embeddings(path, task):
    import numpy as np

    if path.suffix.lower() == ".npy":
        vectors, metadata = np.load(path), {}
    else:
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            vectors, metadata = f.get_tensor("embeddings"), f.metadata()
    index = json.loads(metadata.get("index") or path.with_suffix(".index.json").read_text())
    good = iter(vectors.tolist())
    return [{**i, "task": task, "embedding": None if i["error"] else next(good)} for i in index]
