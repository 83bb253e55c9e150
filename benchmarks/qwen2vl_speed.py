"""Qwen2-VL decode speed: zoo against the model card's transformers code, in the same run (random weights).

Plain: the model card's usage, one request: the chat template, qwen-vl-utils' process_vision_info, the
processor, Qwen2VLForConditionalGeneration.generate with its dynamic cache. zoo: single-stream describe (with
--compile, a static KV cache and torch.compile), batched describe, and classify over the 10 CIFAR-10 labels
(one prefill per batch, labels scored from each input's prefix). A fixed number of new tokens; both follow the
checkpoint's generation config. Checks that zoo's answer equals the plain one.

    python benchmarks/qwen2vl_speed.py --size 2b --new-tokens 128 --batch-size 8 --compile
"""

import functools

import torch
from common import parser, random_images, report, scratch_folder, timed
from qwen_vl_utils import process_vision_info
from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

import zoo
from zoo_qwen2vl import testing as qwen_testing
from zoo.labels import CIFAR10

PROMPT = "Describe this image in detail: the objects, their colours, their positions, and what is happening."


def plain_describe(model, processor, image, pixels, new_tokens):
    """The model card's code for one image: (the answer, the prompt's length in tokens)."""
    messages = [{"role": "user", "content": [{"type": "image", "image": image, **pixels},
                                             {"type": "text", "text": PROMPT}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    images, videos = process_vision_info(messages)
    inputs = processor(text=[text], images=images, videos=videos, padding=True, return_tensors="pt").to(model.device)
    with torch.inference_mode():
        ids = model.generate(**inputs, max_new_tokens=new_tokens)
    prompt_tokens = inputs["input_ids"].shape[1]
    return processor.batch_decode(ids[:, prompt_tokens:], skip_special_tokens=True)[0].strip(), prompt_tokens


def arguments():
    options = parser(__doc__)
    options.add_argument("--size", choices=list(qwen_testing.QWEN2_VL_SIZES), default="2b")
    options.add_argument("--new-tokens", type=int, default=128)
    options.add_argument("--batch-size", type=int, default=8)
    options.add_argument("--classify-images", type=int, default=16)
    options.add_argument("--compile", action="store_true", help="static cache + torch.compile for zoo")
    return options.parse_args()


def main():
    args = arguments()
    folder = scratch_folder("zoo-qwen2vl-")
    qwen_testing.qwen2_vl(folder, size=args.size)
    side = 448 if args.size == "2b" else 112
    pixels = {"min_pixels": side * side, "max_pixels": side * side}
    images = random_images(max(args.batch_size, args.classify_images), side, side)

    model = zoo.load("qwen2-vl-2b-instruct", weights=folder, device=args.device, dtype=args.dtype,
                     batch_size=args.batch_size, static_cache=args.compile, compile=args.compile, **pixels)
    plain = Qwen2VLForConditionalGeneration.from_pretrained(folder, dtype=model.dtype).to(model.device).eval()
    for m in (plain, model.model):
        m.generation_config.min_new_tokens = args.new_tokens  # fixed-length decoding
    plain_one = functools.partial(plain_describe, plain, AutoProcessor.from_pretrained(folder), images[0], pixels,
                                  args.new_tokens)
    zoo_one = functools.partial(model.describe, images[0], prompt=PROMPT, max_new_tokens=args.new_tokens)

    plain_one()  # warm-up
    zoo_one()  # warm-up (compiles when --compile)
    (plain_text, prompt_tokens), plain_s = timed(plain_one)
    [zoo_text], zoo_s = timed(zoo_one)
    batched = functools.partial(model.describe, images[:args.batch_size], prompt=PROMPT, max_new_tokens=args.new_tokens)
    batched()  # warm-up
    _, batch_s = timed(batched)
    _, classify_s = timed(lambda: model.classify(images[:args.classify_images], labels=list(CIFAR10)))
    result = {
        "size": args.size, "device": str(model.device), "dtype": str(model.dtype), "attention": model.attention,
        "image": f"{side}x{side}", "prompt_tokens": prompt_tokens, "new_tokens": args.new_tokens,
        "compile": args.compile, "plain_tokens_s": args.new_tokens / plain_s, "zoo_tokens_s": args.new_tokens / zoo_s,
        "single_stream_speedup": plain_s / zoo_s, "identical_answers": plain_text == zoo_text,
        "batched_tokens_s": args.batch_size * args.new_tokens / batch_s, "batch_size": args.batch_size,
        "classify_10_labels_img_s": args.classify_images / classify_s,
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
