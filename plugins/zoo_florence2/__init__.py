"""Built-in plugin: Florence-2 (captions, OCR, detection, open-vocabulary classification)."""

import itertools
from dataclasses import dataclass
from typing import Literal

import zoo
from zoo import vlm
from zoo.inputs import open_image
from zoo.model import DescribeOptions
from zoo.options import option
from zoo.streaming import iter_inputs


def as_list(value):
    """One phrase or region, or one per input, as a list."""
    return [] if value is None else list(value) if vlm.per_input(value) else [value]


PLUGIN = "florence2"
# Every task of the model card, by the name zoo gives it.
DESCRIBE_TASKS = {
    "caption": "<CAPTION>",
    "detailed_caption": "<DETAILED_CAPTION>",
    "more_detailed_caption": "<MORE_DETAILED_CAPTION>",
    "ocr": "<OCR>",
    "region_to_category": "<REGION_TO_CATEGORY>",
    "region_to_description": "<REGION_TO_DESCRIPTION>",
    "region_to_ocr": "<REGION_TO_OCR>",
}
DETECT_TASKS = {
    "od": "<OD>",
    "dense_region_caption": "<DENSE_REGION_CAPTION>",
    "region_proposal": "<REGION_PROPOSAL>",
    "phrase_grounding": "<CAPTION_TO_PHRASE_GROUNDING>",
    "open_vocabulary_detection": "<OPEN_VOCABULARY_DETECTION>",
    "ocr_with_region": "<OCR_WITH_REGION>",
    "referring_expression_segmentation": "<REFERRING_EXPRESSION_SEGMENTATION>",
    "region_to_segmentation": "<REGION_TO_SEGMENTATION>",
}
PHRASE_TASKS = ("phrase_grounding", "open_vocabulary_detection", "referring_expression_segmentation")
REGION_TASKS = ("region_to_category", "region_to_description", "region_to_ocr", "region_to_segmentation")
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Options:
    num_beams: int | None = option(None, minimum=1)  # None: the checkpoint's generation_config, else the card's 3


@dataclass(frozen=True)
class Florence2DescribeOptions(DescribeOptions):
    task: Literal[tuple(DESCRIBE_TASKS)] = "caption"
    prompt: str | None = None  # replaces the task's own prompt
    region: Box | tuple[Box, ...] | None = None  # region_to_*: (x0, y0, x1, y1) in input pixels, or one per input
    num_beams: int | None = option(None, minimum=1)


@dataclass(frozen=True)
class Florence2DetectOptions:
    task: Literal[tuple(DETECT_TASKS)] = "od"
    phrase: str | tuple[str, ...] | None = None  # what to find (phrase tasks): one for all inputs, or one per input
    region: Box | tuple[Box, ...] | None = None  # region_to_segmentation: in input pixels, or one per input
    max_new_tokens: int | None = option(None, minimum=1)
    num_beams: int | None = option(None, minimum=1)


def bounds(polygons):
    xs = [x for p in polygons for x in p[0::2]]
    ys = [y for p in polygons for y in p[1::2]]
    return (float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys)))


def detections(answer):
    """Typed detections from post_process_generation's answer for one image: boxes, quads or polygons."""
    found = []
    box_labels = answer.get("bboxes_labels", answer.get("labels", []))
    for box, label in zip(answer.get("bboxes", []), box_labels or [""] * len(answer.get("bboxes", []))):
        found.append(zoo.Detection(tuple(float(v) for v in box), label.strip()))
    for quad, label in zip(answer.get("quad_boxes", []), answer.get("labels", [])):  # OCR regions: 4 corners
        found.append(zoo.Detection(bounds([quad]), label.strip(), polygons=(tuple(float(v) for v in quad),)))
    polygon_labels = answer.get("polygons_labels", answer.get("labels", []))
    for polygons, label in zip(answer.get("polygons", []), polygon_labels):
        polygons = tuple(tuple(float(v) for v in p) for p in polygons if len(p) >= 6)
        if polygons:
            found.append(zoo.Detection(bounds(polygons), label.strip(), polygons=polygons))
    return found


class Florence2(vlm.VisionLanguageModel):
    capabilities = frozenset({"describe", "detect", "classify"})
    Options = Options
    describe_options, detect_options = Florence2DescribeOptions, Florence2DetectOptions
    card_generation = {"max_new_tokens": 1024, "num_beams": 3, "do_sample": False}  # the model card's example
    streams_tokens = False  # post_process_generation reads each answer whole
    per_input_options = ("prompt", "phrase", "region")

    def __init__(self, record, runtime, model, processor, *, attention, options=Options(), weights_path=None):
        super().__init__(record, runtime, model, processor, attention=attention, weights_path=weights_path)
        self.num_beams = options.num_beams

    @classmethod
    def classes(cls):
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        return Florence2ForConditionalGeneration, AutoProcessor

    @property
    def positions(self):
        """Tokens the encoder and the decoder each read at most (1024 in the released checkpoints)."""
        return self.model.config.text_config.max_position_embeddings

    def check_call(self, capability, options):
        options = super().check_call(capability, options)
        task = getattr(options, "task", None)
        phrases = as_list(getattr(options, "phrase", None))
        if task in PHRASE_TASKS and not (phrases and all(p.strip() for p in phrases)):
            raise zoo.BadInput(f"{task} needs a phrase: detect(images, task={task!r}, phrase='a cat').")
        if task in REGION_TASKS and options.region is None:
            raise zoo.BadInput(f"{task} needs a region in input pixels: region=(x0, y0, x1, y1).")
        for region in as_list(getattr(options, "region", None)):
            if not (region[0] < region[2] and region[1] < region[3]):
                raise zoo.BadInput(f"region={region}: expected (x0, y0, x1, y1) with x0 < x1 and y0 < y1.")
        self.check_task_tokens([getattr(options, "prompt", None)], phrases)
        return options

    def check_task_tokens(self, prompts, phrases):
        """The processor takes a task token without input only as the whole prompt (else a ValueError)."""
        tokens = self.processor.task_prompts_without_inputs
        for text, whole in [*((p, True) for p in prompts if p), *((p, False) for p in phrases)]:
            token = next((t for t in tokens if t in text and not (whole and text == t)), None)
            if token:
                raise zoo.BadInput(f"{text[:60]!r} holds the task token {token}, which Florence-2 takes only as the "
                                   "whole prompt: choose the task with task=..., or pass the token alone.")

    def items(self, inputs, options):
        """Each input with its own task input: the phrase or region given for it (or for every input)."""
        task_input = getattr(options, "phrase", None) or getattr(options, "region", None)
        given = task_input if vlm.per_input(task_input) else itertools.repeat(task_input)
        return (vlm.Query(item, value) for item, value in zip(iter_inputs(inputs), given))

    def prepare(self, query):
        # As the model card opens images: PIL, then RGB (no EXIF turn, alpha dropped).
        return query._replace(content=open_image(query.content).convert("RGB"))

    def prompt(self, query, options):
        """The task token and its input: a phrase as text, a region as the processor's location tokens."""
        if getattr(options, "prompt", None):
            return options.prompt
        task = getattr(options, "task", None) or "caption"
        token = (DESCRIBE_TASKS | DETECT_TASKS)[task]
        if task in REGION_TASKS:
            import torch

            bins = self.processor.post_processor.quantize(torch.tensor([query.prompt]), query.content.size)[0]
            return token + "".join(f"<loc_{int(v)}>" for v in bins)
        return token + (query.prompt.strip() if task in PHRASE_TASKS else "")

    def encode(self, batch, options):
        prompts = [self.prompt(q, options) for q in batch]
        encoded = self.processor(text=prompts, images=[q.content for q in batch], return_tensors="pt", padding=True)
        if encoded["input_ids"].shape[1] > self.positions:
            raise zoo.BadInput(f"{self.name}: the prompt is too long ({encoded['input_ids'].shape[1]} tokens with the "
                               f"image's; the model reads at most {self.positions}): shorten it.")
        encoded = encoded.to(self.device)
        encoded["pixel_values"] = encoded["pixel_values"].to(self.dtype)
        return encoded

    def generation_options(self, options):
        generation = super().generation_options(options)
        if self.num_beams and options.num_beams is None:  # the load option, below the call's own
            generation["num_beams"] = self.num_beams
        longest = self.positions - 2  # the decoder has no positions beyond its embeddings
        return {**generation, "max_new_tokens": min(generation.get("max_new_tokens", longest), longest)}

    def decode(self, ids, encoded):
        return self.processor.batch_decode(ids, skip_special_tokens=False)  # post-processing needs them

    def parsed(self, batch, options, tasks):
        """Each image's answer from the processor's own post_process_generation, in input pixels."""
        token = tasks[options.task]
        texts = self.generate_texts(batch, options)
        return [self.processor.post_process_generation(t, task=token, image_size=q.content.size)[token]
                for t, q in zip(texts, batch)]

    def describe_batch(self, batch, options):
        """Text per image: a caption, OCR, or what a region shows; `prompt` replaces the task's own prompt."""
        return self.parsed(batch, options, DESCRIBE_TASKS)

    def detect_batch(self, batch, options):
        """Boxes (and polygons, for OCR regions and segmentation) in pixels of each input image, with labels."""
        return [detections(answer) for answer in self.parsed(batch, options, DETECT_TASKS)]

    def label_scores(self, batch, labels):
        """log p(label | image) per image and label: one encoder pass for the batch, then every (image, label)
        pair in one decoder batch (row i * len(labels) + j: image i, label j)."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        padded, mask = self.label_batch(labels)
        encoded = self.encode([query._replace(prompt=None) for query in batch], None)  # the caption task's prompt
        start = padded[:1, :1].expand(len(batch), -1)
        encoder = self.model(**encoded, decoder_input_ids=start).encoder_last_hidden_state
        padded, mask = padded.repeat(len(batch), 1), mask.repeat(len(batch), 1)
        logits = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoder.repeat_interleave(len(labels), dim=0)),
            attention_mask=encoded["attention_mask"].repeat_interleave(len(labels), dim=0),
            decoder_input_ids=padded[:, :-1], decoder_attention_mask=mask,
        ).logits
        scores = vlm.sequence_logprobs(logits, padded[:, 1:], mask).view(len(batch), len(labels))
        return scores.cpu().to(torch.float32)

    def label_batch(self, labels):
        """Decoder inputs '<start> <s> label </s>' for every label, right-padded, and their target mask."""
        import torch

        tok = self.processor.tokenizer
        start = self.model.config.text_config.decoder_start_token_id
        sequences = [[start, tok.bos_token_id, *tok(label, add_special_tokens=False).input_ids, tok.eos_token_id]
                     for label in labels]
        width = max(map(len, sequences))
        if width - 1 > self.positions:  # the decoder reads all but the last token
            label = labels[max(range(len(labels)), key=lambda i: len(sequences[i]))]
            raise zoo.BadInput(f"The label {label[:40]!r}... is too long for {self.name} ({width - 3} tokens; at most "
                               f"{self.positions - 2}).")
        padded = torch.full((len(labels), width), tok.pad_token_id)
        mask = torch.zeros(len(labels), width - 1)
        for row, seq in enumerate(sequences):
            padded[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq) - 1] = 1
        return padded.to(self.device), mask.to(self.device)


@zoo.hookimpl
def register_loaders(register):
    register(PLUGIN, Florence2)
