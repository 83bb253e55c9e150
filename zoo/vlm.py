"""VisionLanguageModel: what the transformers vision-language plugins share.

Loading from a save_pretrained folder, pairing inputs with prompts, batched generation, token streaming
for one input, and classify by label likelihood. A plugin writes `prepare` (one query -> model-ready
media), `encode` (a batch -> processor tensors), `decode` (generated ids -> texts), `label_scores` and
its describe/detect batch methods.
"""

import logging
from typing import Any, NamedTuple

from .config import home
from .errors import BadInput, MissingWeights
from .inputs import is_video
from .model import Model, top_predictions
from .runtime import ATTENTION, has_flash_attn
from .streaming import iter_inputs

REQUIRED_FILES = ("config.json",)


def medium(item):
    """What a classify question calls an input: a video, several images, or an image."""
    if is_video(item):
        return "video"
    return "images" if isinstance(item, (list, tuple)) and len(item) > 1 else "image"


def per_input(value):
    """True for a list of prompts, phrases or regions (one per input) rather than one for every input."""
    return isinstance(value, (list, tuple)) and bool(value) and isinstance(value[0], (str, list, tuple))


class Query(NamedTuple):
    """One input (an image, a video, several images, or a chat) and the prompt that goes with it."""

    content: Any
    prompt: str | None


# A CPU has no idle arithmetic for a batch to fill: batched generation pads every sequence to the longest and
# multiplies the beams, and was slower than one input at a time (benchmarks/florence2_speed.py on 2 cores:
# batch 8 at 0.83x the model card's one-at-a-time loop, batch 1 at 1.03x).
CPU_BATCH_SIZE = 1


def attention_backend(device):
    """flash_attention_2 on CUDA when flash-attn is installed (pip install 'zoo[gpu]'), else PyTorch SDPA."""
    if device.type == "cuda" and has_flash_attn():
        return "flash_attention_2"
    return "sdpa"


def check_folder(record, weights):
    """Refuse a folder that is not a save_pretrained checkpoint before transformers builds anything."""
    if weights is None or not weights.is_dir():
        raise MissingWeights(f"{record.name}: weights must be a save_pretrained folder, got {weights}.")
    missing = [name for name in REQUIRED_FILES if not (weights / name).is_file()]
    if missing or not any(weights.glob("*.safetensors")):
        lacking = missing[0] if missing else "*.safetensors"
        raise MissingWeights(f"{record.name}: {weights} has no {lacking}; pass the folder save_pretrained wrote.")


def not_the_fast_default_notice(record):
    """transformers 5.0 tells every process that a checkpoint saved with a slow image processor now gets the fast
    one. zoo loads the processor as the model cards do, so that default is the official path and not the user's to
    act on; later releases choose the same without a word."""
    return "is now loaded as a fast processor by default" not in record.getMessage()


def load_pretrained(model_class, processor_class, record, weights, runtime):
    """(model, processor, attention) from a save_pretrained folder; safetensors only, no network."""
    check_folder(record, weights)
    attention = runtime.attention or attention_backend(runtime.device)
    # One device: the weights load straight onto it (loading on the CPU first, then moving, needs host memory for
    # the whole model). A device_map: transformers and accelerate place (and offload) the layers.
    placement = {"device_map": runtime.device}
    if runtime.device_map is not None:
        placement = {"device_map": runtime.device_map, "max_memory": runtime.max_memory,
                     "offload_folder": str(home() / "offload" / record.name)}
    model = model_class.from_pretrained(weights, dtype=runtime.dtype, attn_implementation=attention,
                                        use_safetensors=True, local_files_only=True, **placement)
    logging.getLogger("transformers.models.auto.image_processing_auto").addFilter(not_the_fast_default_notice)
    processor = processor_class.from_pretrained(weights, local_files_only=True)
    return model.eval(), processor, attention


def sequence_logprobs(logits, targets, mask):
    """Sum of log p(target token) over the positions where mask is 1, one total per row."""
    import torch

    logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (logprobs * mask).sum(-1)


class VisionLanguageModel(Model):
    open_vocabulary = True
    default_batch_size = 8  # on a GPU; on a CPU, one input at a time (CPU_BATCH_SIZE)
    requires = {"transformers": "vlm", "accelerate": "vlm"}  # accelerate: device_map
    card_generation = {}  # generate() arguments of the model card's example: the defaults zoo follows
    classify_prompt = None  # a question about the labels ('{labels}', '{medium}'), for models that classify by answering
    per_input_options = ("prompt",)  # call options that may hold one value per input
    streams_tokens = True  # whether an answer's tokens, decoded as they come, are the answer describe gives
    places_layers = True
    attentions = ATTENTION

    def __init__(self, record, runtime, model, processor, *, attention, weights_path=None):
        super().__init__(record, runtime, weights_path=weights_path)
        self.model, self.processor, self.attention = model, processor, attention

    def default_batch(self):
        return CPU_BATCH_SIZE if self.device.type == "cpu" else self.default_batch_size

    @classmethod
    def classes(cls):
        """(model class, processor class) from transformers; plugins override."""
        raise NotImplementedError

    @classmethod
    def load(cls, record, weights, runtime, options):
        model_class, processor_class = cls.classes()
        model, processor, attention = load_pretrained(model_class, processor_class, record, weights, runtime)
        if runtime.compile:
            # transformers' own compiled generation: a static KV cache, whose fixed shapes let generate() compile the
            # decoding step (CUDA graphs) while the prefill, whose shapes vary, stays eager. Compiling forward here
            # as well captured the prefill too, and replaying its graphs overwrote the cache on an H100.
            model.generation_config.cache_implementation = "static"
        else:
            model.generation_config.disable_compile = True  # a static cache alone compiles nothing unasked
        return cls(record, runtime, model, processor, attention=attention, weights_path=weights, options=options)

    # -- inputs ---------------------------------------------------------------------------------------

    def items(self, inputs, options):
        prompt, labels = getattr(options, "prompt", None), getattr(options, "labels", None)
        if labels and self.classify_prompt:
            return (Query(item, self.classify_prompt.format(labels=", ".join(labels), medium=medium(item)))
                    for item in iter_inputs(inputs))
        if per_input(prompt):
            return (Query(item, text) for item, text in zip(iter_inputs(inputs), prompt))
        return (Query(item, prompt) for item in iter_inputs(inputs))

    def check_call(self, capability, options):
        options = super().check_call(capability, options)
        prompt = getattr(options, "prompt", None)
        if isinstance(prompt, str) and not prompt.strip():
            raise BadInput("The prompt is empty: ask something, or leave it out for the default.")
        return options

    def stream(self, capability, inputs, options, progress=None, *, keep_errors=False):
        for name in self.per_input_options:
            value = options.get(name)
            given = len(inputs) if isinstance(inputs, (list, tuple)) else 1
            if isinstance(value, (list, tuple)) and (per_input(value) or not value) and len(value) != given:
                raise BadInput(f"{len(value)} {name}s for {given} inputs: give one per input, or one for all.")
        return super().stream(capability, inputs, options, progress, keep_errors=keep_errors)

    # -- generation -----------------------------------------------------------------------------------

    def generation_options(self, options):
        """generate() arguments: the caller's, else the checkpoint's generation_config, else the model card's.

        zoo never overrides what the checkpoint's generation_config sets with its own constants.
        """
        checkpoint = self.model.generation_config.to_diff_dict()
        card = {k: v for k, v in self.card_generation.items() if k not in checkpoint}
        given = {k: getattr(options, k, None) for k in ("max_new_tokens", "num_beams")}
        return {**card, **{k: v for k, v in given.items() if v is not None}}

    def generate_texts(self, batch, options):
        """Generated text for a batch of prepared queries."""
        encoded = self.encode(batch, options)
        ids = self.model.generate(**encoded, **self.generation_options(options))
        return self.decode(ids, encoded)

    def model_inputs(self, inputs, **options):
        """The processor tensors that describe(inputs, **options) gives the model, as one batch."""
        checked = self.call_options("describe", options)
        return self.encode([self.prepare(query) for query in self.items(inputs, checked)], checked)

    def stream_text(self, item, **options):
        """Yield the answer for one input piece by piece as it is generated; all at once where it cannot stream
        (beam search chooses its answer at the end; a model whose answers are parsed whole)."""
        import threading

        from transformers import TextIteratorStreamer

        checked = self.call_options("describe", options)
        if not self.streams_tokens or self.generation_options(checked).get("num_beams", 1) > 1:
            yield self.describe(item, **options)[0]
            return
        [query] = list(self.items([item], checked))
        encoded = self.encode([self.prepare(query)], checked)
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failed = []

        def generate():
            try:
                self.model.generate(**encoded, **self.generation_options(checked), streamer=streamer)
            except BaseException as error:  # ends the stream (else the reader waits forever) and is raised there
                failed.append(error)
                streamer.end()

        worker = threading.Thread(target=generate, name="zoo-generate")
        worker.start()
        yield from streamer
        worker.join()
        if failed:
            raise failed[0]

    # -- classify by likelihood ----------------------------------------------------------------------

    def classify_batch(self, batch, options):
        return top_predictions(self.label_scores(batch, options.labels), options.labels, options.top_k)
