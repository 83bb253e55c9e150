"""Built-in plugin: Qwen2-VL (images, several images per message, video; answers and label likelihoods)."""

import copy
from pathlib import Path

import zoo
from zoo import vlm
from zoo.errors import BadInput
from zoo.inputs import is_video, load_image
from zoo.weights import offline

from .video import read_frames

PLUGIN = "qwen2vl"
IMAGE_PROMPT = "Describe this image."
VIDEO_PROMPT = "Describe this video."
CLASSIFY_PROMPT = "Which of these is shown in the image? Answer with one of: {labels}."


def is_messages(value):
    """A chat in the original format: a list of {'role': ..., 'content': ...} dicts."""
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


class Qwen2VL(zoo.Model):
    capabilities = frozenset({"describe", "classify"})
    open_vocabulary = True

    def __init__(self, record, model, processor, *, device, dtype, attention, batch_size=8, min_pixels=None,
                 max_pixels=None, fps=2.0, nframes=None):
        super().__init__(record)
        self.model, self.processor = model, processor
        self.device, self.dtype, self.attention = device, dtype, attention
        self.batch_size = batch_size
        self.pixels = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v}
        self.video = {"fps": fps, "nframes": nframes}
        processor.tokenizer.padding_side = "left"  # batched generation continues every row at the same column

    # -- building conversations -------------------------------------------------------------------

    def media(self, item):
        """One content part for an image or video input, with the record's pixel budget."""
        if is_video(item):
            frames, fps = read_frames(item, **self.video)
            return {"type": "video", "video": frames, "sample_fps": fps}  # qwen_vl_utils' per-frame video budget
        if isinstance(item, str) and item.startswith(("http://", "https://")):
            if offline():
                raise BadInput(f"{item}: image URLs need the network (ZOO_OFFLINE/HF_HUB_OFFLINE is set).")
            return {"type": "image", "image": item, **self.pixels}
        return {"type": "image", "image": load_image(item), **self.pixels}

    def normalise(self, messages):
        """A chat in the original format, with local media read by zoo (clear errors, PyAV for video)."""
        messages = copy.deepcopy(list(messages))
        for message in messages:
            if isinstance(message.get("content"), list):
                for i, part in enumerate(message["content"]):
                    if "video" in part and isinstance(part["video"], (str, Path)):
                        message["content"][i] = {**self.media(str(part["video"]).removeprefix("file://")),
                                                 **{k: v for k, v in part.items() if k not in ("type", "video")}}
                    elif "image" in part and not isinstance(part["image"], str):
                        message["content"][i] = {**part, **self.media(part["image"])}
                    elif "image" in part and not part["image"].startswith(("http", "data:")):
                        message["content"][i] = {**self.media(part["image"].removeprefix("file://")),
                                                 **{k: v for k, v in part.items() if k not in ("type", "image")}}
        return messages

    def conversations(self, inputs, prompt):
        """One chat per input: an image or video, a list of images (one message), or a chat as it is."""
        if is_messages(inputs):
            return [self.normalise(inputs)]
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not items:
            raise BadInput("No inputs given: pass an image, a video, a list of them, or chat messages.")
        if all(is_messages(i) for i in items):
            return [self.normalise(i) for i in items]
        prompts = self._prompts(prompt, items)
        chats = []
        for item, text in zip(items, prompts):
            parts = [self.media(m) for m in (item if isinstance(item, (list, tuple)) else [item])]
            default = VIDEO_PROMPT if any(p["type"] == "video" for p in parts) else IMAGE_PROMPT
            chats.append([{"role": "user", "content": [*parts, {"type": "text", "text": text or default}]}])
        return chats

    @staticmethod
    def _prompts(prompt, items):
        if isinstance(prompt, (list, tuple)):
            if not prompt:
                raise BadInput("The prompt list is empty: give one prompt per input, or one string for all.")
            if len(prompt) != len(items):
                raise BadInput(f"{len(prompt)} prompts for {len(items)} inputs: give one per input.")
            return list(prompt)
        if prompt is not None and not prompt.strip():
            raise BadInput("The prompt is empty: ask something, or leave it out for a description.")
        return [prompt] * len(items)

    def encode(self, chats):
        from qwen_vl_utils import process_vision_info

        texts = [self.processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
        images, videos, video_kwargs = process_vision_info(chats, return_video_kwargs=True)
        options = {}
        if videos:  # frames are sampled already; the processor takes one fps, not qwen_vl_utils' list
            rates = set(video_kwargs["fps"])
            options = {"do_sample_frames": False, "cap_pixels_per_frame": True,
                       **({"fps": rates.pop()} if len(rates) == 1 else {})}
        batch = self.processor(text=texts, images=images, videos=videos, padding=True, return_tensors="pt", **options)
        return batch.to(self.device)

    # -- the interface ------------------------------------------------------------------------------

    def describe(self, inputs, *, prompt=None, max_new_tokens=128):
        """Text per input; `prompt` makes it visual question answering."""
        import torch

        chats, texts = self.conversations(inputs, prompt), []
        for start in range(0, len(chats), self.batch_size):
            batch = self.encode(chats[start:start + self.batch_size])
            with torch.inference_mode():
                ids = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
            texts += self.processor.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        return [t.strip() for t in texts]

    def stream(self, item, *, prompt=None, max_new_tokens=128):
        """Yield the answer for one input piece by piece as it is generated."""
        import threading

        from transformers import TextIteratorStreamer

        batch = self.encode(self.conversations(item if is_messages(item) else [item], prompt)[:1])
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        worker = threading.Thread(target=self.model.generate, kwargs=dict(
            **batch, max_new_tokens=max_new_tokens, do_sample=False, streamer=streamer))
        worker.start()
        yield from streamer
        worker.join()

    def label_scores(self, image, labels):
        """log p(label, end of turn | question): one prefill, then every label from the shared prefix."""
        import torch

        tok = self.processor.tokenizer
        end = tok.convert_tokens_to_ids("<|im_end|>")
        question = CLASSIFY_PROMPT.format(labels=", ".join(labels))
        batch = self.encode([[{"role": "user", "content": [self.media(image), {"type": "text", "text": question}]}]])
        sequences = [tok(label, add_special_tokens=False).input_ids + [end] for label in labels]
        width = max(map(len, sequences))
        ids = torch.full((len(labels), width), tok.pad_token_id)
        mask = torch.zeros(len(labels), width)
        for row, seq in enumerate(sequences):
            ids[row, :len(seq)], mask[row, :len(seq)] = torch.tensor(seq), 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        prefix = batch["input_ids"].shape[1]
        with torch.inference_mode():
            out = self.model(**batch, use_cache=True)
            cache = out.past_key_values
            cache.batch_repeat_interleave(len(labels))
            attention = torch.cat([batch["attention_mask"].expand(len(labels), -1), mask.long()], dim=1)
            # Text after the image: all three M-RoPE axes advance together, offset by the prefill's delta.
            steps = torch.arange(prefix, prefix + width, device=self.device)
            positions = (steps + self.model.model.rope_deltas.view(-1, 1)).expand(3, len(labels), -1)
            logits = self.model(input_ids=ids, attention_mask=attention, past_key_values=cache, position_ids=positions,
                                cache_position=steps, use_cache=True).logits
        # The prefill's last position predicts each label's first token; the rest predict the next ones.
        first = out.logits[:, -1:].expand(len(labels), -1, -1)
        logits = torch.cat([first, logits[:, :-1]], dim=1)
        return vlm.sequence_logprobs(logits, ids, mask).cpu()

    def classify(self, images, *, top_k=5, labels=None):
        """Probabilities over `labels` from each one's likelihood as the answer to a 'which of these' question."""
        import torch

        if not labels:
            raise BadInput(f"{self.name} classifies among labels you give: classify(images, labels=['cat', 'dog']).")
        labels = list(labels)
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        scores = torch.stack([self.label_scores(item, labels) for item in items])
        return vlm.predictions(scores, labels, top_k)


def load(record, weights, *, device=None, dtype=None, attention=None, batch_size=8, static_cache=False,
         compile=False, **options):
    """`static_cache` preallocates the KV cache; `compile` adds torch.compile (CUDA graphs) for fast decoding."""
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    defaults = {**record.model_args, **options}  # min_pixels, max_pixels, fps, nframes
    model, processor, device, dtype, attention = vlm.load_pretrained(
        Qwen2VLForConditionalGeneration, AutoProcessor, record, weights, device=device, dtype=dtype,
        attention=attention)
    if static_cache or compile:
        # Fixed shapes per step are what let torch.compile capture the decode step once and replay it.
        model.generation_config.cache_implementation = "static"
    if compile:
        import torch

        model.forward = torch.compile(model.forward, mode="reduce-overhead")
    return Qwen2VL(record, model, processor, device=device, dtype=dtype, attention=attention, batch_size=batch_size,
                   **defaults)


@zoo.hookimpl
def register_loaders(register):
    register(PLUGIN, load)
