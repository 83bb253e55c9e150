"""Built-in plugin: Florence-2 (captions, OCR, detection, open-vocabulary classification)."""

import zoo
from zoo import vlm
from zoo.errors import BadInput
from zoo.inputs import flatten, load_images

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


def _task(tasks, task, kind):
    if task not in tasks:
        raise BadInput(f"Florence-2 has no {kind} task {task!r}; the tasks are: {', '.join(tasks)}.")
    return tasks[task]


def detections(parsed, task_token):
    """Typed detections from the processor's post_process_generation output for one image."""
    answer = parsed[task_token]
    if "quad_boxes" in answer:  # OCR with regions: 8 coordinates per box, reduced to an axis-aligned box
        boxes = [(min(q[0::2]), min(q[1::2]), max(q[0::2]), max(q[1::2])) for q in answer["quad_boxes"]]
    else:
        boxes = [tuple(b) for b in answer["bboxes"]]
    labels = answer.get("labels") or answer.get("bboxes_labels") or [""] * len(boxes)
    return [zoo.Detection(tuple(float(v) for v in box), label.strip()) for box, label in zip(boxes, labels)]


class Florence2(zoo.Model):
    capabilities = frozenset({"describe", "detect", "classify"})
    open_vocabulary = True

    def __init__(self, record, model, processor, *, device, dtype, attention, batch_size=8, num_beams=1):
        super().__init__(record)
        self.model, self.processor = model, processor
        self.device, self.dtype, self.attention = device, dtype, attention
        self.batch_size, self.num_beams = batch_size, num_beams

    def _inputs(self, images, prompts):
        batch = self.processor(text=prompts, images=images, return_tensors="pt", padding=True)
        batch = batch.to(self.device)
        batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
        return batch

    def generate(self, images, prompts, *, max_new_tokens, num_beams=None):
        """Raw generated text (special tokens kept, as post-processing needs them), in batches."""
        import torch

        # The decoder has no positions beyond its embeddings (1024 in the released checkpoints).
        max_new_tokens = min(max_new_tokens, self.model.config.text_config.max_position_embeddings - 2)
        texts = []
        for start in range(0, len(images), self.batch_size):
            batch = self._inputs(images[start:start + self.batch_size], prompts[start:start + self.batch_size])
            with torch.inference_mode():
                ids = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                          num_beams=num_beams or self.num_beams)
            texts += self.processor.batch_decode(ids, skip_special_tokens=False)
        return texts

    def _run(self, images, token, prompt, max_new_tokens, num_beams):
        images = load_images(images)
        texts = self.generate(images, [prompt or token] * len(images), max_new_tokens=max_new_tokens,
                              num_beams=num_beams)
        return [self.processor.post_process_generation(t, task=token, image_size=i.size) for t, i in zip(texts, images)]

    def describe(self, inputs, *, prompt=None, task="caption", max_new_tokens=128, num_beams=None):
        """A caption (or OCR text) per image; `prompt` replaces the task's own prompt."""
        token = _task(DESCRIBE_TASKS, task, "describe")
        parsed = self._run(inputs, token, prompt, max_new_tokens, num_beams)
        return [p[token] for p in parsed]

    def detect(self, images, *, task="od", phrase=None, max_new_tokens=1024, num_beams=None):
        """Boxes in pixels of each input image, with labels (od, dense_region_caption, phrase_grounding, ...)."""
        token = _task(DETECT_TASKS, task, "detect")
        if task == "phrase_grounding" and not (phrase and phrase.strip()):
            raise BadInput("phrase_grounding needs a phrase: detect(images, task='phrase_grounding', phrase='a cat').")
        prompt = f"{token}{phrase.strip()}" if task == "phrase_grounding" else None
        return [detections(p, token) for p in self._run(images, token, prompt, max_new_tokens, num_beams)]

    def label_scores(self, images, labels):
        """log p(label | image), images x labels: one encoder pass per image, every label in one batch."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        tok = self.processor.tokenizer
        start = self.model.config.text_config.decoder_start_token_id
        # The decoder writes "<s> text </s>" after its start token, as in generation.
        sequences = [[start, tok.bos_token_id, *tok(label, add_special_tokens=False).input_ids, tok.eos_token_id]
                     for label in labels]
        width = max(map(len, sequences))
        padded = torch.full((len(labels), width), tok.pad_token_id)
        mask = torch.zeros(len(labels), width - 1)
        for row, seq in enumerate(sequences):
            padded[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq) - 1] = 1
        padded, mask = padded.to(self.device), mask.to(self.device)
        rows = []
        for image in images:
            batch = self._inputs([image], ["<CAPTION>"])
            with torch.inference_mode():
                encoded = self.model(**batch, decoder_input_ids=padded[:1, :1]).encoder_last_hidden_state
                logits = self.model(
                    encoder_outputs=BaseModelOutput(last_hidden_state=encoded.expand(len(labels), -1, -1)),
                    attention_mask=batch["attention_mask"].expand(len(labels), -1),
                    decoder_input_ids=padded[:, :-1], decoder_attention_mask=mask,
                ).logits
            rows.append(vlm.sequence_logprobs(logits, padded[:, 1:], mask))
        return torch.stack(rows).cpu()

    def classify(self, images, *, top_k=5, labels=None):
        """Probabilities over `labels` from each label's likelihood as the image's caption."""
        if not labels:
            raise BadInput(f"{self.name} classifies among labels you give: classify(images, labels=['cat', 'dog']).")
        labels = list(labels)
        return vlm.predictions(self.label_scores(load_images(flatten(images)), labels), labels, top_k)


def load(record, weights, *, device=None, dtype=None, batch_size=8, num_beams=1, attention=None):
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    model, processor, device, dtype, attention = vlm.load_pretrained(
        Florence2ForConditionalGeneration, AutoProcessor, record, weights, device=device, dtype=dtype,
        attention=attention)
    return Florence2(record, model, processor, device=device, dtype=dtype, attention=attention,
                     batch_size=batch_size, num_beams=num_beams)


@zoo.hookimpl
def register_loaders(register):
    register(PLUGIN, load)
