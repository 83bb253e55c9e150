"""Built-in plugin: Qwen2-VL (images, several images per message, video; answers and label likelihoods)."""

import copy
from dataclasses import dataclass
from pathlib import Path

import zoo
from zoo import vlm
from zoo.inputs import is_video, load_image
from zoo.options import option

from .video import read_frames

PLUGIN = "qwen2vl"
IMAGE_PROMPT = "Describe this image."
VIDEO_PROMPT = "Describe this video."
CLASSIFY_PROMPT = "Which of these is shown in the image? Answer with one of: {labels}."


@dataclass(frozen=True)
class Options:
    min_pixels: int | None = option(None, minimum=1)  # image pixel budget: None keeps the processor's
    max_pixels: int | None = option(None, minimum=1)
    fps: float = option(2.0, minimum=0.0)  # video frames sampled per second
    nframes: int | None = option(None, minimum=2)  # or this many frames, evenly spaced
    static_cache: bool = False  # preallocate the KV cache (with compile=True: CUDA graphs for decoding)


def is_messages(value):
    """A chat in the original format: a list of {'role': ..., 'content': ...} dicts."""
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


class Qwen2VL(vlm.VisionLanguageModel):
    capabilities = frozenset({"describe", "classify"})
    Options = Options
    classify_prompt = CLASSIFY_PROMPT

    def __init__(self, record, runtime, model, processor, *, attention, options=Options(), weights_path=None):
        super().__init__(record, runtime, model, processor, attention=attention, weights_path=weights_path)
        self.pixels = {k: getattr(options, k) for k in ("min_pixels", "max_pixels") if getattr(options, k)}
        self.video = {"fps": options.fps, "nframes": options.nframes}
        processor.tokenizer.padding_side = "left"  # batched generation continues every row at the same column
        if options.static_cache:
            # Fixed shapes per step are what let torch.compile capture the decode step once and replay it.
            model.generation_config.cache_implementation = "static"

    @classmethod
    def classes(cls):
        from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

        return Qwen2VLForConditionalGeneration, AutoProcessor

    # -- building conversations -------------------------------------------------------------------

    def items(self, inputs, options):
        if is_messages(inputs):
            return iter([vlm.Query(inputs, None)])
        return super().items(inputs, options)

    def prepare(self, query):
        """A query -> one chat with its media read (zoo's clear errors, PyAV for video)."""
        if is_messages(query.content):
            return self.normalise(query.content)
        parts = [self.media(m) for m in (query.content if isinstance(query.content, (list, tuple)) else [query.content])]
        default = VIDEO_PROMPT if any(p["type"] == "video" for p in parts) else IMAGE_PROMPT
        return [{"role": "user", "content": [*parts, {"type": "text", "text": query.prompt or default}]}]

    def media(self, item):
        """One content part for an image or video input, with the model's pixel budget."""
        if is_video(item):
            frames, fps = read_frames(item, **self.video)
            return {"type": "video", "video": frames, "sample_fps": fps}  # qwen_vl_utils' per-frame video budget
        # zoo reads every image itself (paths, URLs, data: URIs): offline, nothing reaches the network.
        return {"type": "image", "image": load_image(item), **self.pixels}

    def normalise(self, messages):
        """A chat in the original format, with local media read by zoo."""
        messages = copy.deepcopy(list(messages))
        for message in messages:
            if isinstance(message.get("content"), list):
                message["content"] = [self.part(p) for p in message["content"]]
        return messages

    def part(self, part):
        kind = "video" if "video" in part else "image" if "image" in part else None
        if kind is None:
            return part
        value = part[kind]
        if isinstance(value, (str, Path)):
            value = str(value).removeprefix("file://")
        extra = {k: v for k, v in part.items() if k not in ("type", kind)}
        return {**self.media(value), **extra}

    # -- the model's work ---------------------------------------------------------------------------

    def encode(self, chats, options):
        from qwen_vl_utils import process_vision_info

        texts = [self.processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
        images, videos, video_kwargs = process_vision_info(chats, return_video_kwargs=True)
        extra = {}
        if videos:  # frames are sampled already; the processor takes one fps, not qwen_vl_utils' list
            rates = set(video_kwargs["fps"])
            extra = {"do_sample_frames": False, "cap_pixels_per_frame": True,
                     **({"fps": rates.pop()} if len(rates) == 1 else {})}
        encoded = self.processor(text=texts, images=images, videos=videos, padding=True, return_tensors="pt", **extra)
        return encoded.to(self.device)

    def decode(self, ids, encoded):
        texts = self.processor.batch_decode(ids[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
        return [t.strip() for t in texts]

    def describe_batch(self, chats, options):
        """Text per input; a prompt makes it visual question answering."""
        return self.generate_texts(chats, options)

    def label_scores(self, chat, labels):
        """log p(label, end of turn | question): one prefill, then every label from the shared prefix."""
        import torch

        encoded = self.encode([chat], None)
        ids, mask = self.label_batch(labels)
        prefix, width = encoded["input_ids"].shape[1], ids.shape[1]
        out = self.model(**encoded, use_cache=True)
        cache = out.past_key_values
        cache.batch_repeat_interleave(len(labels))
        attention = torch.cat([encoded["attention_mask"].expand(len(labels), -1), mask.long()], dim=1)
        # Text after the image: all three M-RoPE axes advance together, offset by the prefill's delta.
        steps = torch.arange(prefix, prefix + width, device=self.device)
        positions = (steps + self.model.model.rope_deltas.view(-1, 1)).expand(3, len(labels), -1)
        logits = self.model(input_ids=ids, attention_mask=attention, past_key_values=cache, position_ids=positions,
                            cache_position=steps, use_cache=True).logits
        # The prefill's last position predicts each label's first token; the rest predict the next ones.
        logits = torch.cat([out.logits[:, -1:].expand(len(labels), -1, -1), logits[:, :-1]], dim=1)
        return vlm.sequence_logprobs(logits, ids, mask).cpu()

    def label_batch(self, labels):
        """Every label's tokens and end of turn, right-padded, and their mask."""
        import torch

        tok = self.processor.tokenizer
        end = tok.convert_tokens_to_ids("<|im_end|>")
        sequences = [tok(label, add_special_tokens=False).input_ids + [end] for label in labels]
        width = max(map(len, sequences))
        ids = torch.full((len(labels), width), tok.pad_token_id)
        mask = torch.zeros(len(labels), width)
        for row, seq in enumerate(sequences):
            ids[row, :len(seq)], mask[row, :len(seq)] = torch.tensor(seq), 1
        return ids.to(self.device), mask.to(self.device)


@zoo.hookimpl
def register_loaders(register):
    register(PLUGIN, Qwen2VL)
