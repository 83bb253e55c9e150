"""Inputs as a stream: lazy flattening, batches, and a bounded prefetch thread.

Decoding batch n+1 overlaps the model's work on batch n, and at most `depth` decoded batches wait in the
queue, so memory stays flat however many inputs there are.
"""

import ctypes
import functools
import queue
import threading
import time
from dataclasses import dataclass
from itertools import islice

from .errors import BadInput, printable

_END = object()


@dataclass(frozen=True)
class Failed:
    """An input that could not be read or run: its one-line reason. Sources yield it for an input they could
    not read (reading it raises the reason); a stream kept going past bad inputs yields it in their place."""

    error: str

    def __post_init__(self):
        object.__setattr__(self, "error", printable(self.error))  # it names the input, whatever bytes its name holds


def is_tensor(item):
    return type(item).__module__.startswith("torch") and hasattr(item, "ndim")


def is_file_object(item):
    return callable(getattr(item, "read", None))


def is_iterator(inputs):
    """An iterator of inputs (a file object iterates too, over lines, but is one input)."""
    return hasattr(inputs, "__next__") and not is_file_object(inputs)


def count(inputs):
    """How many items `inputs` holds when that is known without reading it, else None."""
    if isinstance(inputs, (list, tuple)):
        return sum(len(i) if is_tensor(i) and i.ndim == 4 else 1 for i in inputs)
    if is_tensor(inputs) and inputs.ndim == 4:
        return len(inputs)
    return None if is_iterator(inputs) else 1


def iter_inputs(inputs):
    """One input, a list of them, an iterator, or an NCHW tensor (N inputs) -> the items, lazily."""
    if is_tensor(inputs) and inputs.ndim == 4:
        yield from inputs
    elif isinstance(inputs, (list, tuple)) or is_iterator(inputs):
        for item in inputs:
            yield from (item if is_tensor(item) and item.ndim == 4 else [item])
    else:
        yield inputs


def check_not_empty(inputs):
    if isinstance(inputs, (list, tuple)) and not inputs or (is_tensor(inputs) and inputs.ndim == 4 and not len(inputs)):
        raise BadInput("No inputs given: pass an image, a path, or a non-empty list of them.")


def chunks(items, size):
    """Lists of up to size() items; size is read again for every chunk (it shrinks after out-of-memory). A chunk
    is not kept once handed over, so inputs held in memory (decoded video frames) go when their reader is done."""
    items = iter(items)
    while (box := [list(islice(items, size()))])[0]:
        yield box.pop()  # a plain `yield chunk` would keep it alive until the next chunk is read


class Prefetched:
    """Iterate `iterable` while a thread, started at once, computes up to `depth` items ahead.

    close() (at the end, on an error, or when the consumer stops early) stops the thread and joins it.
    """

    def __init__(self, iterable, depth):
        self.waiting, self.stop = queue.Queue(maxsize=depth), threading.Event()
        self.thread = threading.Thread(target=self.produce, args=(iterable,), name="zoo-prefetch", daemon=True)
        self.thread.start()

    def put(self, value):
        while not self.stop.is_set():
            try:
                return self.waiting.put(value, timeout=0.1)
            except queue.Full:
                continue

    def produce(self, iterable):
        try:
            for value in iterable:
                self.put((value, None))
                if self.stop.is_set():
                    return
            self.put((_END, None))
        except BaseException as error:  # re-raised in the consumer's thread
            self.put((None, error))

    def __iter__(self):
        return self

    def __next__(self):
        value, error = self.waiting.get()
        if value is _END or error is not None:
            self.close()
            if error is not None:
                raise error
            raise StopIteration
        return value

    def close(self):
        self.stop.set()
        self.thread.join()


@functools.cache
def _glibc():
    try:
        return ctypes.CDLL("libc.so.6")  # Linux with glibc; elsewhere there is nothing to do
    except OSError:
        return None


_trimmed = [0.0]  # when memory was last given back


def release_free_memory(every_s=1.0):
    """Give the memory freed by decoded batches back to the system, at most once a second. glibc keeps freed blocks
    of a few MB (decoded photos) in its heap, and the resident size of a long run grew with the number of inputs:
    about 100 MB per 1,000 photos, none of it held by zoo (benchmarks/stream_memory.py). After every batch it cost
    a quarter of the speed of small fast batches; once a second costs nothing measurable."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "malloc_trim") or time.monotonic() - _trimmed[0] < every_s:
        return
    libc.malloc_trim(0)
    _trimmed[0] = time.monotonic()
