"""A random Florence-2 (DaViT + BART) with an offline tokenizer, saved like a real checkpoint (tests, benchmarks)."""

import torch

from zoo.testing import byte_level_bpe, write_text_not_stop

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
    write_text_not_stop(model, tok.eos_token_id, size)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
