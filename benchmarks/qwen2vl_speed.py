"""Qwen2-VL decode speed: zoo against plain transformers generate, in the same run (random weights).

Plain: Qwen2VLForConditionalGeneration.generate with a dynamic cache, one request (the reference usage).
zoo: single-stream with a static KV cache and torch.compile (--compile), batched describe, and classify over
the 10 CIFAR-10 labels (one prefill per image, labels scored from the shared prefix). A fixed number of new
tokens; greedy. In float32 it also checks that zoo's greedy tokens equal plain generate's.

    python benchmarks/qwen2vl_speed.py --size 2b --new-tokens 128 --batch-size 8 --compile
"""


import torch
from common import parser, random_images, report, scratch_folder, timed

import zoo
from zoo_qwen2vl import testing as qwen_testing
from zoo.labels import CIFAR10

PROMPT = "Describe this image in detail: the objects, their colours, their positions, and what is happening."


def main():
    options = parser(__doc__)
    options.add_argument("--size", choices=list(qwen_testing.QWEN2_VL_SIZES), default="2b")
    options.add_argument("--new-tokens", type=int, default=128)
    options.add_argument("--batch-size", type=int, default=8)
    options.add_argument("--classify-images", type=int, default=16)
    options.add_argument("--compile", action="store_true", help="static cache + torch.compile for zoo")
    args = options.parse_args()

    folder = scratch_folder("zoo-qwen2vl-")
    qwen_testing.qwen2_vl(folder, size=args.size)
    side = 448 if args.size == "2b" else 112
    pixels = {"min_pixels": side * side, "max_pixels": side * side}
    images = random_images(max(args.batch_size, args.classify_images), side, side)

    plain = zoo.load("qwen2-vl-2b-instruct", weights=folder, device=args.device, dtype=args.dtype, **pixels)
    fast = zoo.load("qwen2-vl-2b-instruct", weights=folder, device=args.device, dtype=args.dtype,
                    batch_size=args.batch_size, static_cache=args.compile, compile=args.compile, **pixels)
    for m in (plain, fast):
        m.model.generation_config.min_new_tokens = args.new_tokens  # fixed-length decoding

    def plain_generate():
        """The reference usage: processor + generate, dynamic cache, no compile."""
        batch = plain.encode(plain.conversations(images[0], PROMPT))
        with torch.inference_mode():
            ids = plain.model.generate(**batch, max_new_tokens=args.new_tokens, do_sample=False)
        return ids[0, batch["input_ids"].shape[1]:].tolist()

    def fast_generate():
        batch = fast.encode(fast.conversations(images[0], PROMPT))
        with torch.inference_mode():
            ids = fast.model.generate(**batch, max_new_tokens=args.new_tokens, do_sample=False)
        return ids[0, batch["input_ids"].shape[1]:].tolist()

    plain_generate()  # warm-up
    fast_generate()  # warm-up (compiles when --compile)
    plain_tokens, plain_s = timed(plain_generate)
    fast_tokens, fast_s = timed(fast_generate)
    fast.describe(images[:args.batch_size], prompt=PROMPT, max_new_tokens=4)
    _, batch_s = timed(lambda: fast.describe(images[:args.batch_size], prompt=PROMPT, max_new_tokens=args.new_tokens))
    _, classify_s = timed(lambda: fast.classify(images[:args.classify_images], labels=list(CIFAR10)))
    prompt_tokens = plain.encode(plain.conversations(images[0], PROMPT))["input_ids"].shape[1]
    result = {
        "size": args.size, "device": str(plain.device), "dtype": str(plain.dtype), "attention": plain.attention,
        "image": f"{side}x{side}", "prompt_tokens": prompt_tokens, "new_tokens": args.new_tokens,
        "compile": args.compile, "plain_tokens_s": args.new_tokens / plain_s, "zoo_tokens_s": args.new_tokens / fast_s,
        "single_stream_speedup": plain_s / fast_s, "identical_greedy_tokens": plain_tokens == fast_tokens,
        "batched_tokens_s": args.batch_size * args.new_tokens / batch_s, "batch_size": args.batch_size,
        "classify_10_labels_img_s": args.classify_images / classify_s,
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
