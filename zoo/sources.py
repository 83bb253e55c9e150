"""What bulk inference reads: files, folders, globs, lists of paths or URLs, CSV/Parquet manifests, video frames.

Every source becomes `Item`s: a key that names the input in the output (a path, a URL, `path#t=1.500` for a
video frame, `data:image/png;base64,...#sha256=...` for a data: URI, `input-3` for an in-memory image) and the
value a model reads. Nothing is decoded here except video frames, and those only as they are read: the items
stream, so memory does not grow with their number.
"""

import collections
import csv
import dataclasses
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .datasets import IMAGE_SUFFIXES
from .errors import BadInput, printable
from .files import as_path
from .inputs import URL_PREFIXES as WEB_PREFIXES
from .inputs import (EMPTY_PATH, IMAGE_RECORD, VIDEO_SUFFIXES, check_pixels, existing_file, input_key, is_video,
                     open_video, video_file)
from .streaming import Failed, is_iterator

URL_PREFIXES = (*WEB_PREFIXES, "data:")  # inputs named by their own text, not looked up as files
LIST_SUFFIXES = (".txt", ".lst")
MANIFEST_SUFFIXES = (".csv", ".parquet")
IMAGE_ROWS = 64  # rows of a Parquet manifest read at a time when they hold the images themselves
MAX_LINE = 1 << 20  # characters in one line of a list, a CSV manifest or standard input (a path is at most 4 KiB)


@dataclass(frozen=True)
class Item:
    key: str
    value: Any
    frame_time: float | None = None  # seconds into the video, for a frame

    def __post_init__(self):
        object.__setattr__(self, "key", printable(self.key))  # results files hold text; names may hold other bytes


@dataclass(frozen=True)
class Sources:
    recursive: bool = False  # walk into sub-folders
    extensions: tuple = IMAGE_SUFFIXES + VIDEO_SUFFIXES  # what a folder or glob keeps
    column: str = "path"  # the column of a CSV/Parquet manifest that names the inputs
    fps: float | None = None  # sample videos at this many frames per second (image models); None: 1.0
    whole_videos: bool = False  # hand videos to the model whole (Qwen2-VL) instead of as frames

    def items(self, inputs):
        """Items from one input, a list of them or an iterator of them (read once), lazily, in order."""
        inputs = inputs if isinstance(inputs, (list, tuple)) or is_iterator(inputs) else [inputs]
        return itertools.chain.from_iterable(self.expand(value, i) for i, value in enumerate(inputs))

    def count(self, inputs):
        """How many items `inputs` gives, without decoding or keeping anything; None when videos are split into
        frames (their number is known only once decoded) or when `inputs` is an iterator (it reads only once)."""
        if is_iterator(inputs):
            return None
        total = 0
        for item in dataclasses.replace(self, whole_videos=True).items(inputs):
            if not self.whole_videos and is_video(item.key):
                return None
            total += 1
        return total

    def expand(self, value, index):
        if not isinstance(value, (str, Path)):
            return [Item(f"input-{index}", value)]
        text = str(value)
        if not text.strip():
            return [Item(text, Failed(EMPTY_PATH))]
        if text.startswith(WEB_PREFIXES) and is_video(text) and not self.whole_videos:
            return frames(text, self.fps or 1.0)
        if text.startswith(URL_PREFIXES):
            return [Item(input_key(text), text)]
        try:
            path = as_path(text)
        except BadInput as e:  # named in a list or manifest: one error row, and the run goes on
            return [Item(input_key(text), Failed(str(e)))]
        if any(c in text for c in "*?[") and not path.exists():  # 'IMG [1].jpg' is a file, not a pattern
            found = glob_paths(str(path))
            return self.paths(found) if found else [Item(input_key(text), Failed(f"No file matches {text[:200]}."))]
        if path.is_dir():
            walk = path.rglob("*") if self.recursive else path.iterdir()
            return self.paths(sorted(walk))
        if path.suffix.lower() in LIST_SUFFIXES:
            return self.listed(existing_file(path, "a list"))
        if path.suffix.lower() in MANIFEST_SUFFIXES:
            return self.manifest(existing_file(path, "a manifest"))
        return self.paths([path], keep_all=True)

    def paths(self, paths, keep_all=False):
        for path in paths:
            if not keep_all and (path.suffix.lower() not in self.extensions or path.exists() and not path.is_file()):
                continue  # folders, pipes, sockets (a broken link stays: its error row says so)
            if is_video(path) and not self.whole_videos:
                yield from frames(path, self.fps or 1.0)
            else:
                yield Item(str(path), path)

    def listed(self, path):
        """One path or URL a line ('#' comments and blank lines skipped)."""
        return self.entries(path, checked(path, list_lines, "list of paths", "; a list is UTF-8 text, one path a line"))

    def manifest(self, path):
        values = parquet_column if path.suffix.lower() == ".parquet" else csv_column
        return self.entries(path, checked(path, lambda p: values(p, self.column), f"{path.suffix[1:].upper()} manifest"))

    def entries(self, path, values):
        """The inputs a list or manifest names (empty ones skipped); relative paths from its folder. An image stored
        in a Parquet manifest is named by its row (photos.parquet#row=7), as a video frame is by its time."""
        for row, value in enumerate(values):
            if isinstance(value, dict):
                if value["bytes"] is None and value["path"] and not Path(value["path"]).is_absolute():
                    value = {"bytes": None, "path": str(path.parent / value["path"])}  # as a path in a manifest
                yield Item(f"{path}#row={row}", value)
                continue
            text = "" if value is None else str(value).strip()
            if not text:
                continue
            if not text.startswith(URL_PREFIXES) and Path(text).suffix.lower() in LIST_SUFFIXES + MANIFEST_SUFFIXES:
                raise BadInput(f"{path} names {text}, another list: lists and manifests name images, videos, folders "
                               "or globs.")
            yield from self.expand(text if text.startswith(URL_PREFIXES) or Path(text).is_absolute()
                                   else str(path.parent / text), 0)


def glob_paths(pattern):
    """The files a glob names, sorted; '**' walks sub-folders without following links to folders (a link back
    up would repeat everything below it), and names starting with '.' are left out, as the shell does."""
    parts = Path(pattern).expanduser().parts
    fixed = next(i for i, part in enumerate(parts) if any(c in part for c in "*?["))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    found = root.glob(str(Path(*parts[fixed:])))
    return sorted(p for p in found if not any(part.startswith(".") for part in p.relative_to(root).parts))


def sources_for(whole_videos, recursive=False, extensions=None, column="path", fps=None):
    """Sources as zoo.run and the CLI name them: `extensions` as 'jpg,png' or a list, with or without dots."""
    if isinstance(extensions, str):
        extensions = extensions.split(",")
    kept = tuple(f".{e.strip().lstrip('.').lower()}" for e in extensions or () if e.strip().lstrip("."))
    if fps is not None and not (isinstance(fps, (int, float)) and 0 < fps < float("inf")):
        raise BadInput(f"fps={fps!r}: give a number of video frames per second above 0, such as 1 or 0.5.")
    if not isinstance(column, str) or not column:
        raise BadInput(f"column={column!r}: name the manifest column that holds the paths, such as 'path'.")
    return Sources(recursive=bool(recursive), column=column, fps=fps, whole_videos=whole_videos,
                   **({"extensions": kept} if kept else {}))


def checked(path, values, what, hint=""):
    """values(path), a generator, gone through once now keeping nothing, so a damaged file is one line before the
    run starts; then anew, lazily, for the run: a list of millions of paths is never held whole."""
    try:
        collections.deque(values(path), maxlen=0)
    except (UnicodeDecodeError, OSError, ValueError, csv.Error) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise BadInput(f"{path}: not a readable {what} ({reason(e)}){hint}.") from None
    return values(path)


def list_lines(path):
    with open(path, encoding="utf-8-sig") as f:  # a BOM, as Windows editors write
        yield from named_lines(bounded_lines(f, path))


def named_lines(lines):
    """The inputs a list's lines name: stripped, without blank lines and '#' comments."""
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            yield text


def bounded_lines(f, name):
    """The lines of a file object, each at most MAX_LINE long: a file without line breaks is refused in one line,
    not read whole into memory."""
    while line := f.readline(MAX_LINE + 1):
        if len(line) > MAX_LINE:
            raise BadInput(f"{name}: a line longer than {MAX_LINE:,} characters; lists and manifests name one input "
                           "a line.")
        yield line


def parquet_column(path, column):
    """The values of one column of a Parquet file, a batch at a time: paths as text (or bytes), or images stored in
    the file as Hugging Face datasets stores them ({bytes, path} records: the hub's Parquet files)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    if column not in schema.names:
        raise no_column(path, column, schema.names)
    kind = schema.field(column).type
    kind = kind.value_type if pa.types.is_dictionary(kind) else kind  # a pandas category column
    images = pa.types.is_struct(kind) and {field.name for field in kind} == IMAGE_RECORD
    if not (images or pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind)):
        raise BadInput(f"{path}: column {column!r} holds {kind}, not paths or images; name the column of paths "
                       "with --column.")
    rows = IMAGE_ROWS if images else 65_536  # pyarrow's batch, unless each row holds a whole image
    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=[column]):
        yield from (os.fsdecode(v) if isinstance(v, bytes) else v for v in batch.column(0).to_pylist())


def csv_column(path, column):
    """The values of one column of a CSV file, a row at a time."""
    with open(path, newline="", encoding="utf-8-sig") as f:  # a BOM, as Excel writes "CSV UTF-8"
        reader = csv.DictReader(bounded_lines(f, path))
        if column not in (reader.fieldnames or []):
            raise no_column(path, column, reader.fieldnames or [])
        yield from (row[column] for row in reader)


def no_column(path, column, names):
    return BadInput(f"{path} has no column {column!r} (it has {', '.join(names) or 'none: is it empty?'}): "
                    "pass --column.")


def reason(error):
    return " ".join(str(error).split())[:120]


def frames(video, fps):
    """The frames of a video (a path or URL) at `fps` frames per second, decoded with PyAV as they are read."""
    try:
        with video_file(video) as path, open_video(path) as (container, _):
            step, next_time = 1.0 / fps, 0.0
            for frame in container.decode(video=0):
                if frame.time is not None and frame.time + 1e-9 >= next_time:
                    check_pixels(path, frame.width, frame.height, "a video frame")  # sizes may change mid-stream
                    yield Item(f"{video}#t={frame.time:.3f}", frame.to_image(), frame.time)
                    next_time += step * (1 + int((frame.time - next_time) // step))
    except BadInput as e:  # one error row, and the run goes on
        yield Item(str(video), Failed(str(e)))
