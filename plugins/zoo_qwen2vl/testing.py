"""For tests and benchmarks: a random Qwen2-VL with the Qwen special tokens and chat template, saved like a real
checkpoint, and the official video reader to compare zoo's with."""

import torch

from zoo.testing import byte_level_bpe, write_text_not_stop

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# The released checkpoints' processor budget (preprocessor_config.json), so tests see the real defaults.
RELEASED_PIXELS = dict(size={"shortest_edge": 3136, "longest_edge": 12845056})

QWEN2_VL_SIZES = {
    "tiny": dict(
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=1, mrope_section=[2, 3, 3]),
        vision=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2)),
    # Qwen2-VL-2B: a 28-layer Qwen2 of width 1536 (GQA 12/2 heads) and a 32-layer ViT of width 1280.
    "2b": dict(
        text=dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, mrope_section=[16, 24, 24]),
        vision=dict(depth=32, embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4)),
}


def qwen2_vl(path, seed=0, size="tiny"):
    """A random Qwen2-VL of the given size with the Qwen special tokens and chat template, saved in `path`."""
    from transformers import (Qwen2Tokenizer, Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                              Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor)

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
               "<|image_pad|>", "<|video_pad|>"]
    bpe = byte_level_bpe(special, [])
    tok = Qwen2Tokenizer(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                         unk_token=None, bos_token=None, chat_template=QWEN_CHAT_TEMPLATE)
    ids = {t: tok.convert_tokens_to_ids(t) for t in special}
    spec = QWEN2_VL_SIZES[size]
    text = dict(spec["text"])
    section = text.pop("mrope_section")
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**RELEASED_PIXELS),
        video_processor=Qwen2VLVideoProcessor(**RELEASED_PIXELS),
        tokenizer=tok, chat_template=QWEN_CHAT_TEMPLATE,
    )
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=len(tok), max_position_embeddings=32768, **text,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": section},
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(**spec["vision"], patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    write_text_not_stop(model, ids["<|im_end|>"], size)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def official_read_video(path, start_pts=0.0, end_pts=None, pts_unit="sec", output_format="TCHW"):
    """torchvision.io.read_video's answer (which qwen-vl-utils' default reader calls; torchvision 0.29 lacks it),
    decoded with PyAV as torchvision did: every frame, keeping those in [start, end] seconds."""
    import av

    with av.open(str(path)) as container:
        fps = float(container.streams.video[0].average_rate)
        frames = [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1) for f in container.decode(video=0)
                  if f.time >= start_pts and (end_pts is None or f.time <= end_pts)]
    return torch.stack(frames), torch.empty(0), {"video_fps": fps}
