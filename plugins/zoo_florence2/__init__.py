"""Built-in plugin: Florence-2 (captions, OCR, detection, open-vocabulary classification)."""

from dataclasses import dataclass
from typing import Literal

import zoo
from zoo import vlm
from zoo.model import DescribeOptions
from zoo.options import option

PLUGIN = "florence2"
DESCRIBE_TASKS = {
    "caption": "<CAPTION>",
    "detailed_caption": "<DETAILED_CAPTION>",
    "more_detailed_caption": "<MORE_DETAILED_CAPTION>",
    "ocr": "<OCR>",
}
DETECT_TASKS = {
    "od": "<OD>",
    "dense_region_caption": "<DENSE_REGION_CAPTION>",
    "phrase_grounding": "<CAPTION_TO_PHRASE_GROUNDING>",
    "ocr_with_region": "<OCR_WITH_REGION>",
}


@dataclass(frozen=True)
class Options:
    num_beams: int = option(1, minimum=1)  # the default beam count of describe and detect


@dataclass(frozen=True)
class Florence2DescribeOptions(DescribeOptions):
    task: Literal[tuple(DESCRIBE_TASKS)] = "caption"
    prompt: str | None = None  # replaces the task's own prompt
    num_beams: int | None = option(None, minimum=1)


@dataclass(frozen=True)
class Florence2DetectOptions:
    task: Literal[tuple(DETECT_TASKS)] = "od"
    phrase: str | None = None  # the text to ground (phrase_grounding)
    max_new_tokens: int = option(1024, minimum=1)
    num_beams: int | None = option(None, minimum=1)


def detections(parsed, task_token):
    """Typed detections from the processor's post_process_generation output for one image."""
    answer = parsed[task_token]
    if "quad_boxes" in answer:  # OCR with regions: 8 coordinates per box, reduced to an axis-aligned box
        boxes = [(min(q[0::2]), min(q[1::2]), max(q[0::2]), max(q[1::2])) for q in answer["quad_boxes"]]
    else:
        boxes = [tuple(b) for b in answer["bboxes"]]
    labels = answer.get("labels") or answer.get("bboxes_labels") or [""] * len(boxes)
    return [zoo.Detection(tuple(float(v) for v in box), label.strip()) for box, label in zip(boxes, labels)]


class Florence2(vlm.VisionLanguageModel):
    capabilities = frozenset({"describe", "detect", "classify"})
    Options = Options
    describe_options, detect_options = Florence2DescribeOptions, Florence2DetectOptions

    def __init__(self, record, runtime, model, processor, *, attention, options=Options(), weights_path=None):
        super().__init__(record, runtime, model, processor, attention=attention, weights_path=weights_path)
        self.num_beams = options.num_beams

    @classmethod
    def classes(cls):
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        return Florence2ForConditionalGeneration, AutoProcessor

    def check_call(self, capability, options):
        options = super().check_call(capability, options)
        if capability == "detect" and options.task == "phrase_grounding" and not (options.phrase or "").strip():
            raise zoo.BadInput("phrase_grounding needs a phrase: detect(images, task='phrase_grounding', phrase='a cat').")
        return options

    def prepare(self, query):
        return query._replace(content=super().prepare(query.content))

    def encode(self, batch, options):
        token = (DESCRIBE_TASKS | DETECT_TASKS).get(getattr(options, "task", None), "<CAPTION>")
        phrase = getattr(options, "phrase", None)
        prompts = [q.prompt or (f"{token}{phrase.strip()}" if phrase else token) for q in batch]
        encoded = self.processor(text=prompts, images=[q.content for q in batch], return_tensors="pt", padding=True)
        encoded = encoded.to(self.device)
        encoded["pixel_values"] = encoded["pixel_values"].to(self.dtype)
        return encoded

    def generation_options(self, options):
        # The decoder has no positions beyond its embeddings (1024 in the released checkpoints).
        longest = self.model.config.text_config.max_position_embeddings - 2
        return {"max_new_tokens": min(options.max_new_tokens, longest), "do_sample": False,
                "num_beams": options.num_beams or self.num_beams}

    def decode(self, ids, encoded):
        return self.processor.batch_decode(ids, skip_special_tokens=False)  # post-processing needs them

    def parsed(self, batch, options, tasks):
        token = tasks[options.task]
        texts = self.generate_texts(batch, options)
        return [self.processor.post_process_generation(t, task=token, image_size=q.content.size)[token]
                for t, q in zip(texts, batch)], token

    def describe_batch(self, batch, options):
        """A caption (or OCR text) per image; `prompt` replaces the task's own prompt."""
        return self.parsed(batch, options, DESCRIBE_TASKS)[0]

    def detect_batch(self, batch, options):
        """Boxes in pixels of each input image, with labels."""
        answers, token = self.parsed(batch, options, DETECT_TASKS)
        return [detections({token: answer}, token) for answer in answers]

    def label_scores(self, query, labels):
        """log p(label | image) for every label: one encoder pass, every label in one decoder batch."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        padded, mask = self.label_batch(labels)
        encoded = self.encode([query], None)
        encoder = self.model(**encoded, decoder_input_ids=padded[:1, :1]).encoder_last_hidden_state
        logits = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoder.expand(len(labels), -1, -1)),
            attention_mask=encoded["attention_mask"].expand(len(labels), -1),
            decoder_input_ids=padded[:, :-1], decoder_attention_mask=mask,
        ).logits
        return vlm.sequence_logprobs(logits, padded[:, 1:], mask).cpu().to(torch.float32)

    def label_batch(self, labels):
        """Decoder inputs '<start> <s> label </s>' for every label, right-padded, and their target mask."""
        import torch

        tok = self.processor.tokenizer
        start = self.model.config.text_config.decoder_start_token_id
        sequences = [[start, tok.bos_token_id, *tok(label, add_special_tokens=False).input_ids, tok.eos_token_id]
                     for label in labels]
        width = max(map(len, sequences))
        padded = torch.full((len(labels), width), tok.pad_token_id)
        mask = torch.zeros(len(labels), width - 1)
        for row, seq in enumerate(sequences):
            padded[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq) - 1] = 1
        return padded.to(self.device), mask.to(self.device)


@zoo.hookimpl
def register_loaders(register):
    register(PLUGIN, Florence2)
