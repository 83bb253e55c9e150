"""Randomly initialised vision-language models with offline-built tokenizers, saved like real checkpoints.

Tests load them through the same path as real weights (tiny sizes); benchmarks time them at the real
architecture sizes ("base", "2b"). Their tokenizers are small BPEs trained here, so the vocabulary (and the
output layer) is smaller than the released models': the only size difference from the real networks.
"""

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

CORPUS = [
    "What does the image describe?", "Describe in detail what is shown in the image.",
    "Describe with a paragraph what is shown in the image.", "What is the text in the image?",
    "What is the text in the image, with regions?", "Locate the objects with category name in the image.",
    "Locate the objects in the image, with their descriptions.", "Locate the phrases in the caption: a cat",
    "Which of these is shown in the image? Answer with one of: airplane, automobile, bird, cat, deer, dog, frog.",
    "a photo of a cat dog bird frog horse ship truck airplane automobile deer. How many dogs do you see?",
    "Describe this video. Describe this image. A car parked on a street, 你好 用中文回答",
]


def byte_level_bpe(special, added, vocab_size=500):
    bpe = Tokenizer(models.BPE(unk_token=special[-1] if "<unk>" in special else None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS * 3, trainer)
    bpe.add_special_tokens(added)
    return bpe


FLORENCE2_SIZES = {
    # 64x64 pixels through four stride-2+ stages: 2x2 tokens, plus one pooled token.
    "tiny": dict(image=64, text=dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                                     decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                     max_position_embeddings=256),
                 vision=dict(depths=[1, 1, 1, 1], embed_dim=[16, 16, 32, 32], num_heads=[1, 1, 2, 2],
                             num_groups=[1, 1, 2, 2], window_size=2, projection_dim=32)),
    # Florence-2-base: DaViT-B at 768x768 (24x24 + 1 image tokens) and a 6+6-layer BART of width 768.
    "base": dict(image=768, text=dict(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                                      decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
                                      max_position_embeddings=1024),
                 vision=dict(depths=[1, 1, 9, 1], embed_dim=[128, 256, 512, 1024], num_heads=[4, 8, 16, 32],
                             num_groups=[4, 8, 16, 32], window_size=12, projection_dim=768)),
}


def florence2(path, seed=0, size="tiny"):
    """A random Florence-2 (DaViT + BART) of the given size, and its processor, saved in `path`."""
    from transformers import (BartTokenizer, CLIPImageProcessor, Florence2Config, Florence2ForConditionalGeneration,
                              Florence2Processor)

    added = [f"<loc_{i}>" for i in range(1000)] + ["<od>", "</od>", "<ocr>", "</ocr>", "<poly>", "</poly>", "<sep>",
                                                   "<image>"]
    bpe = byte_level_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], added)
    tok = BartTokenizer(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                        mask_token="<mask>", extra_special_tokens={"image_token": "<image>"})
    spec = FLORENCE2_SIZES[size]
    side = spec["image"]
    images = CLIPImageProcessor(size={"height": side, "width": side}, do_center_crop=False, resample=3,
                                image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                                image_seq_length=(side // 32) ** 2 + 1)
    # Real checkpoints ship this in processor_config.json; the parser refuses tasks missing from it.
    parsers = {task: {} for task in ("ocr", "phrase_grounding", "pure_text", "description_with_bboxes",
                                     "description_with_polygons", "polygons", "bboxes",
                                     "description_with_bboxes_or_polygons")}
    processor = Florence2Processor(image_processor=images, tokenizer=tok, post_processor_config=parsers)
    ids = dict(pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
               decoder_start_token_id=tok.eos_token_id, forced_eos_token_id=tok.eos_token_id)
    config = Florence2Config(
        text_config=dict(vocab_size=len(tok), **spec["text"], **ids),
        vision_config=spec["vision"],
        image_token_id=tok.image_token_id,
    )
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(config).eval()
    _write_text_not_stop(model, tok.eos_token_id, size)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


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


QWEN2_VL_SIZES = {
    "tiny": dict(pixels=28 * 28 * 16,
                 text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           num_key_value_heads=1, mrope_section=[2, 3, 3]),
                 vision=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2)),
    # Qwen2-VL-2B: a 28-layer Qwen2 of width 1536 (GQA 12/2 heads) and a 32-layer ViT of width 1280.
    "2b": dict(pixels=448 * 448,
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
    pixels = dict(min_pixels=28 * 28 * 4, max_pixels=spec["pixels"])
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        video_processor=Qwen2VLVideoProcessor(**pixels),
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
    _write_text_not_stop(model, ids["<|im_end|>"], size)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _write_text_not_stop(model, eos_token_id, size):
    """Random weights that write varied text instead of ending at once: no end-of-text logit, and
    (at tiny sizes only, where it is numerically safe) larger weights so that greedy picks differ."""
    with torch.no_grad():
        model.get_output_embeddings().weight[eos_token_id] = 0
        if size == "tiny":
            for p in model.parameters():
                if p.ndim == 2:
                    p.mul_(4)
