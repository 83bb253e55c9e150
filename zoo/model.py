"""The one interface every loaded model speaks, and the result types it returns.

`Model` owns the work common to every model: it checks the options of a call before doing anything,
streams the inputs through a bounded prefetch queue in batches, backs off on out-of-memory, and shows
progress for long inputs. A plugin writes `prepare` (one input -> what its batch method takes) and one
`<capability>_batch` method per capability: `classify_batch`, `embed_batch`, `describe_batch`, `detect_batch`.
"""

import functools
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from . import streaming
from .streaming import Failed
from .errors import BadInput, PluginError, UnsupportedCapability, ZooError
from .inputs import load_image
from .options import NoOptions, option, validate
from .runtime import Runtime, pick_device

CAPABILITIES = ("classify", "embed", "describe", "detect")
PREFETCH_BATCHES = 2  # decoded batches waiting while the model works: enough to hide decoding, and bounded
CHEAP_PREPARE_S = 200e-6  # below this per input, a thread hand-off costs more than the decoding itself


@dataclass(frozen=True)
class Prediction:
    """`index` is the position of `label` in the labels scored: `labels=` when given, else `model.labels`."""

    label: str
    index: int
    score: float

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class Detection:
    box: tuple  # (x0, y0, x1, y1) in pixels of the input image
    label: str
    score: float | None = None
    polygons: tuple | None = None  # for regions that are not boxes: polygons of (x, y, x, y, ...) in input pixels

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class ClassifyOptions:
    top_k: int = option(5, minimum=1)
    labels: tuple[str, ...] | None = None  # score only these (closed-set) or these free-form names (open-vocabulary)


@dataclass(frozen=True)
class DescribeOptions:
    prompt: str | tuple[str, ...] | None = None  # one for every input, or one per input
    max_new_tokens: int | None = option(None, minimum=1)  # None: the model card's (Qwen2-VL 128, Florence-2 1024)


def prepared_batches(pool, prepare, chunks):
    """Decoded batches. Slow decoding (files) runs in the pool's threads, up to PREFETCH_BATCHES ahead of the
    model; cheap decoding (arrays already at the model's size) runs in line, where a thread hand-off would
    cost more than the decoding and contend with the model for the interpreter lock."""
    first = next(chunks, None)
    if first is None:
        return
    started = time.perf_counter()
    head = prepare(first[0])
    if time.perf_counter() - started < CHEAP_PREPARE_S:
        yield [head, *map(prepare, first[1:])]
        yield from ([prepare(item) for item in chunk] for chunk in chunks)
        return
    # The next batches decode while this one is finished and run.
    ahead = streaming.Prefetched(mapped(pool, prepare, chunks), PREFETCH_BATCHES)
    try:
        batch, first = [head, *pool.map(prepare, first[1:])], None  # inputs in memory (video frames) go now
        yield batch
        yield from ahead
    finally:
        ahead.close()


def mapped(pool, prepare, chunks):
    """Each chunk prepared in the pool, let go of (decoded video frames are large) before its batch waits."""
    for chunk in chunks:
        batch = list(pool.map(prepare, chunk))
        del chunk
        yield batch


def prepare_or_fail(prepare, item):
    if isinstance(item, Failed):  # an input its source could not read
        return item
    try:
        return prepare(item)
    except BadInput as e:  # this input; any other ZooError (a setting, a missing package) stops the run
        return Failed(str(e))


def top_predictions(scores, labels, top_k):
    """Prediction lists, best first, from a rows-by-labels score tensor (softmax over each row)."""
    import torch

    probs = torch.softmax(scores.float(), dim=-1)
    values, picks = probs.topk(min(top_k, len(labels)), dim=-1)
    return [[Prediction(labels[i], i, v) for i, v in zip(row, vals)] for row, vals in zip(picks.tolist(), values.tolist())]


TORCH_HABITS = frozenset({"to", "cuda", "cpu", "half", "float", "bfloat16", "eval", "train"})  # placement, mode


class Model:
    """Base class of every model. Subclasses set `capabilities` and write the matching `*_batch` methods."""

    capabilities = frozenset()
    open_vocabulary = False  # classify(labels=...) takes any names, not only the model's own labels
    reads_video = False  # takes whole videos (else bulk inference hands it their frames)
    Options = NoOptions  # what zoo.load(name, **model_options) accepts for this model
    classify_options, embed_options = ClassifyOptions, NoOptions  # what each call accepts
    describe_options, detect_options = DescribeOptions, NoOptions
    default_batch_size = 32
    labels = None  # the model's own label names, for closed-set classifiers
    hints = {}  # capability -> what to do instead, added to the "cannot" error
    attention = None  # the attention implementation in use, when known
    attentions = ()  # those zoo.load(attention=...) may ask for; none: the model cannot switch
    places_layers = False  # takes device_map/max_memory: transformers places (and offloads) its layers
    compile_needs_torch = None  # (major, minor): the oldest torch whose compiler traces it, where torch 2.4's cannot
    requires = {}  # Python package -> the zoo extra that installs it, checked before weights are fetched

    def __init__(self, record, runtime=None, *, weights_path=None):
        self.record, self.name, self.weights_path = record, record.name, weights_path
        runtime = runtime or Runtime(*pick_device("cpu"))
        self.device, self.dtype, self.workers = runtime.device, runtime.dtype, runtime.workers
        self.batch_size = runtime.batch_size or self.default_batch()

    def __getattr__(self, name):
        # Reached only for what the model lacks: a torch module's habits (model.to("cuda"), model.eval()) get the
        # zoo way in their error, not a bare AttributeError.
        if name in TORCH_HABITS:
            raise AttributeError(f"{self.__dict__.get('name', 'A zoo model')} is a zoo model, not a torch module: "
                                 "choose where it runs at load (zoo.load(NAME, device='cuda', dtype='bfloat16')); "
                                 "it always runs in inference mode.")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def default_batch(self):
        """Inputs per batch when zoo.load names no batch_size (self.device is set)."""
        return self.default_batch_size

    @classmethod
    def load(cls, record, weights, runtime, options):
        """Build the model for zoo.load; plugins whose models need weights or options override it."""
        return cls(record, runtime, weights_path=weights)

    @classmethod
    def options_for(cls, capability):
        return getattr(cls, f"{capability}_options")

    # -- the interface ------------------------------------------------------------------------------

    def classify(self, inputs, *, progress=None, **options):
        """For each input, predictions sorted by score (probabilities)."""
        return list(self.classify_stream(inputs, progress=progress, **options))

    def embed(self, inputs, *, progress=None, **options):
        """A float tensor with one row per input."""
        import torch

        return torch.stack(list(self.embed_stream(inputs, progress=progress, **options)))

    def describe(self, inputs, *, progress=None, **options):
        """One string per input."""
        return list(self.describe_stream(inputs, progress=progress, **options))

    def detect(self, inputs, *, progress=None, **options):
        """For each input, a list of Detection."""
        return list(self.detect_stream(inputs, progress=progress, **options))

    def classify_stream(self, inputs, *, progress=None, **options):
        """The results of classify one input at a time, as they are computed: memory does not grow."""
        return self.stream("classify", inputs, options, progress)

    def embed_stream(self, inputs, *, progress=None, **options):
        return self.stream("embed", inputs, options, progress)

    def describe_stream(self, inputs, *, progress=None, **options):
        return self.stream("describe", inputs, options, progress)

    def detect_stream(self, inputs, *, progress=None, **options):
        return self.stream("detect", inputs, options, progress)

    def supports(self, capability):
        return capability in self.capabilities

    # -- what plugins write ---------------------------------------------------------------------------

    def prepare(self, item):
        """One input -> what the batch methods take (here an RGB PIL image). Runs in decoding threads."""
        return load_image(item)

    def collate(self, prepared):
        """A list of prepared items -> one batch (here the list itself)."""
        return prepared

    def items(self, inputs, options):
        """The items a call works through, lazily (vision-language models pair inputs with prompts)."""
        return streaming.iter_inputs(inputs)

    def check_call(self, capability, options):
        """The call's options, checked against the model (beyond their types); returns them."""
        if capability == "classify":
            return self.check_labels(options)
        return options

    # -- the work, written once ---------------------------------------------------------------------

    def call_options(self, capability, options):
        """Validated options for one call; raises before any work for an unsupported or bad call."""
        if capability not in self.capabilities:
            raise self.unsupported(capability, self.hints.get(capability, ""))
        checked = validate(self.options_for(capability), options, f"{self.name}.{capability}")
        return self.check_call(capability, checked)

    def stream(self, capability, inputs, options, progress=None, *, keep_errors=False):
        """Results one input at a time; options and inputs are checked now, the work runs as it is read.

        With keep_errors, an input that cannot be read or run yields a `Failed` (its one-line reason) in its
        place and the rest go on: what bulk inference writes as error rows.
        """
        checked = self.call_options(capability, options)
        streaming.check_not_empty(inputs)
        return self._results(capability, inputs, checked, progress, keep_errors)

    def _results(self, capability, inputs, options, progress, keep_errors):
        from tqdm import tqdm

        run = getattr(self, f"{capability}_batch")
        prepare = functools.partial(prepare_or_fail, self.prepare) if keep_errors else self.prepare
        total = streaming.count(inputs)
        show = progress if progress is not None else (total or 0) > 4 * self.batch_size and sys.stderr.isatty()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="zoo-decode") as pool, \
                tqdm(total=total, desc=f"{self.name} {capability}", disable=not show, leave=False, unit="input") as bar:
            chunks = streaming.chunks(self.items(inputs, options), lambda: self.batch_size)
            for batch in prepared_batches(pool, prepare, chunks):
                yield from (self._run_keeping_errors if keep_errors else self._run_batch)(run, batch, options)
                bar.update(len(batch))
                streaming.release_free_memory()

    def _run_batch(self, run, batch, options):
        """run(batch) as one list of results; on out-of-memory, halves the batch (and future ones)."""
        import torch

        try:
            with torch.inference_mode():
                results = list(run(self.collate(batch), options))
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise ZooError(f"{self.name}: out of memory even at batch size 1 on {self.device}.") from None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            half = (len(batch) + 1) // 2
            self.batch_size = min(self.batch_size, half)
            return self._run_batch(run, batch[:half], options) + self._run_batch(run, batch[half:], options)
        if len(results) != len(batch):
            raise PluginError(f"{type(self).__name__}.{run.__name__} gave {len(results)} results for {len(batch)} inputs.")
        return results

    def _run_keeping_errors(self, run, batch, options):
        """Results for a batch with Failed in place of inputs that failed; a failing batch runs one by one."""
        good = [item for item in batch if not isinstance(item, Failed)]
        try:
            results = iter(self._run_batch(run, good, options) if good else [])
        except ZooError as e:  # one input of the batch, or all: each alone says which
            results = iter([Failed(str(e))] if len(good) == 1 else [self._run_one(run, item, options) for item in good])
        return [item if isinstance(item, Failed) else next(results) for item in batch]

    def _run_one(self, run, item, options):
        try:
            return self._run_batch(run, [item], options)[0]
        except ZooError as e:
            return Failed(str(e))

    def check_labels(self, options):
        """Labels given to classify: non-empty distinct names, known to a closed-set model."""
        labels = options.labels
        if labels is None:
            if self.open_vocabulary:
                raise BadInput(f"{self.name} classifies among labels you give: classify(images, labels=['cat', 'dog']).")
            return options
        if not labels or any(not label.strip() for label in labels) or len(set(labels)) != len(labels):
            raise BadInput(f"labels={list(labels)!r}: give a non-empty list of distinct, non-empty label names.")
        unknown = [label for label in labels if not self.open_vocabulary and label not in self.labels]
        if unknown:
            raise BadInput(f"{self.name} is a closed-set classifier; {unknown[0]!r} is not one of its labels. "
                           "Use an open-vocabulary model (Florence-2, Qwen2-VL) for free-form labels.")
        return options

    def label_predictions(self, logits, options):
        """Predictions from logits over the model's own labels, restricted to `labels=` when given."""
        labels = options.labels or self.labels
        if logits.shape[-1] != len(self.labels):
            raise ZooError(f"{self.name}: its network gives {logits.shape[-1]} scores an image but its record names "
                           f"{len(self.labels)} labels: make the labels match the network's head.")
        if options.labels is not None:
            logits = logits[:, [self.labels.index(label) for label in labels]]
        return top_predictions(logits, labels, options.top_k)

    def param_count(self):
        """Parameters of the loaded network (the record's published figure when unknown)."""
        network = getattr(self, "module", None) or getattr(self, "model", None)
        if network is not None and hasattr(network, "parameters"):
            return sum(p.numel() for p in network.parameters())
        return self.record.params

    def unsupported(self, capability, hint=""):
        from .registry import registry

        err = UnsupportedCapability(self.name, capability, registry().names(task=capability))
        if hint:
            err.args = (f"{err.args[0]} {hint}",)
        return err

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} {sorted(self.capabilities)}>"
