"""Built-in plugin: Qwen2-VL (images, several images per message, video; answers and label likelihoods)."""

from dataclasses import dataclass
from pathlib import Path

import zoo
from zoo import vlm
from zoo.inputs import is_video, open_image
from zoo.options import option

from .chat import SMALLEST_IMAGE, check_chat, check_text, is_messages, kind, with_budget
from .video import video_source, vision_info
from .video import install as install_video_reader

PLUGIN = "qwen2vl"
IMAGE_PROMPT = "Describe this image."
VIDEO_PROMPT = "Describe this video."
CLASSIFY_PROMPT = "Which of these is shown in the {medium}? Answer with one of: {labels}."


@dataclass(frozen=True)
class Options:
    """Defaults for every image and video part that does not set its own (None: qwen-vl-utils' own)."""

    min_pixels: int | None = option(None, minimum=SMALLEST_IMAGE)  # image pixel budget; None: 3136 .. 12845056,
    max_pixels: int | None = option(None, minimum=SMALLEST_IMAGE)  # the released checkpoints' and qwen-vl-utils'
    fps: float | None = option(None, minimum=0.0)  # video frames per second; None: qwen-vl-utils' 2.0
    nframes: int | None = option(None, minimum=2)  # or this many frames, evenly spaced
    static_cache: bool = False  # preallocate the KV cache (compile=True implies it)


class Qwen2VL(vlm.VisionLanguageModel):
    capabilities = frozenset({"describe", "classify"})
    Options = Options
    classify_prompt = CLASSIFY_PROMPT
    reads_video = True
    requires = {**vlm.VisionLanguageModel.requires, "qwen_vl_utils": "vlm"}
    card_generation = {"max_new_tokens": 128}  # the model card's generate call
    compile_needs_torch = (2, 5)  # torch 2.4's dynamo stops at a dict in the config (rope_parameters, transformers 5.0)

    def __init__(self, record, runtime, model, processor, *, attention, options=Options(), weights_path=None):
        super().__init__(record, runtime, model, processor, attention=attention, weights_path=weights_path)
        if options.fps and options.nframes:
            raise zoo.BadInput(f"{record.name}: give fps or nframes for videos, not both.")
        self.images = {k: getattr(options, k) for k in ("min_pixels", "max_pixels") if getattr(options, k)}
        self.videos = {k: getattr(options, k) for k in ("fps", "nframes") if getattr(options, k)}
        self.placeholders = (processor.image_token, processor.video_token)  # what the processor counts
        processor.tokenizer.padding_side = "left"  # batched generation continues every row at the same column
        install_video_reader()
        if options.static_cache:
            model.generation_config.cache_implementation = "static"

    @classmethod
    def classes(cls):
        from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

        return Qwen2VLForConditionalGeneration, AutoProcessor

    # -- building conversations: the official message format, read as qwen-vl-utils reads it -------------

    def items(self, inputs, options):
        if is_messages(inputs):
            return iter([vlm.Query(inputs, None)])
        return super().items(inputs, options)

    def prepare(self, query):
        """A query -> (chat, its images, its videos), read and resized by qwen-vl-utils in a decoding thread."""
        chat = self.chat(query)
        images, videos = vision_info(chat)
        return chat, images or [], videos or []

    def check_call(self, capability, options):
        """Prompts and labels become chat text: a vision placeholder written in them is refused now."""
        options = super().check_call(capability, options)
        prompt, labels = getattr(options, "prompt", None), getattr(options, "labels", None)
        for text in [*([prompt] if isinstance(prompt, str) else prompt or ()), *(labels or ())]:
            check_text(text, "The prompt or a label", self.placeholders)
        return options

    def chat(self, query):
        if is_messages(query.content):
            check_chat(query.content, self.placeholders)
            return [{**m, "content": [self.part(p) for p in m["content"]] if isinstance(m["content"], (list, tuple))
                     else m["content"]} for m in query.content]
        items = query.content if isinstance(query.content, (list, tuple)) else [query.content]
        parts = [self.part({"type": "video", "video": i} if is_video(i) else {"type": "image", "image": i})
                 for i in items]
        default = VIDEO_PROMPT if any("video" in p for p in parts) else IMAGE_PROMPT
        return [{"role": "user", "content": [*parts, {"type": "text", "text": query.prompt or default}]}]

    def part(self, part):
        """One content part: images read by zoo (clear errors; offline, no request), video paths and URLs checked."""
        if kind(part) == "image":  # image_url too: qwen-vl-utils would download it itself, offline or not
            image = open_image(part.get("image", part.get("image_url")))
            return with_budget({**{k: v for k, v in part.items() if k != "image_url"}, "image": image}, self.images)
        if "video" in part and isinstance(part["video"], (str, Path)):  # the video budget, not the image one
            return with_budget({**part, "video": video_source(part["video"])}, self.videos)
        if "video" in part:  # a list of frames, as qwen-vl-utils takes them
            return {**part, "video": [open_image(f) for f in part["video"]]}
        return part

    # -- the model's work ---------------------------------------------------------------------------

    def encode(self, batch, options):
        """The processor's tensors for prepared chats, as the model card calls it."""
        texts = [self.processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c, _, _ in batch]
        images = [i for _, chat_images, _ in batch for i in chat_images] or None
        videos = [v for _, _, chat_videos in batch for v in chat_videos] or None
        # Frames are sampled already (qwen-vl-utils' do_sample_frames=False); its per-video fps list does not
        # change Qwen2-VL's tensors, and this processor takes one number, so it is left out.
        encoded = self.processor(text=texts, images=images, videos=videos, padding=True, return_tensors="pt",
                                 do_sample_frames=False, **({"cap_pixels_per_frame": True} if videos else {}))
        return encoded.to(self.device)

    def decode(self, ids, encoded):
        texts = self.processor.batch_decode(ids[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
        return [t.strip() for t in texts]

    def describe_batch(self, chats, options):
        """Text per input; a prompt makes it visual question answering."""
        return self.generate_texts(chats, options)

    @property
    def cache_keyword(self):
        """How forward() takes a KV cache: `cache` from transformers 5.24, `past_key_values` (refused from 5.40)
        before."""
        import inspect

        return "cache" if "cache" in inspect.signature(type(self.model).forward).parameters else "past_key_values"

    def label_scores(self, batch, labels):
        """log p(label, end of turn | question) per input and label: one prefill for the batch (left-padded, as
        generation is), then every label of every input from that input's share of the cache."""
        import torch

        encoded = self.encode(batch, None)
        ids, mask = self.label_batch(labels)
        rows, prefix, width = len(batch) * len(labels), encoded["input_ids"].shape[1], ids.shape[1]
        out = self.model(**encoded, use_cache=True, logits_to_keep=1)  # only the last position's logits are read
        cache = out["cache" if "cache" in out else "past_key_values"]  # renamed in transformers 5.24
        cache.batch_repeat_interleave(len(labels))  # row i * len(labels) + j: input i, label j
        ids, mask = ids.repeat(len(batch), 1), mask.repeat(len(batch), 1)
        attention = torch.cat([encoded["attention_mask"].repeat_interleave(len(labels), dim=0), mask.long()], dim=1)
        # Text after the image: all three M-RoPE axes advance together, offset by each input's prefill delta.
        steps = torch.arange(prefix, prefix + width, device=self.device)
        deltas = self.model.model.rope_deltas.view(-1, 1).repeat_interleave(len(labels), dim=0)
        positions = (steps + deltas).expand(3, rows, -1)
        logits = self.model(input_ids=ids, attention_mask=attention, position_ids=positions, cache_position=steps,
                            use_cache=True, **{self.cache_keyword: cache}).logits
        # The prefill's last position predicts each label's first token; the rest predict the next ones.
        first = out.logits[:, -1:].repeat_interleave(len(labels), dim=0)
        logits = torch.cat([first, logits[:, :-1]], dim=1)
        return vlm.sequence_logprobs(logits, ids, mask).view(len(batch), len(labels)).cpu()

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
