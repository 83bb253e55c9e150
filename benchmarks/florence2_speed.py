"""Florence-2: batched describe against the model card's code (one image at a time through generate), same run.

Random weights at the real Florence-2 base or large architecture (zoo.testing builds them offline), a fixed
number of new tokens, the model card's decoding (3 beams) on both paths. Checks that the batched captions equal
the one-by-one captions, then times classify over the 10 CIFAR-10 labels.

    python benchmarks/florence2_speed.py --size base --images 32 --batch-size 16 --new-tokens 32
"""

import torch
from common import parser, random_images, report, scratch_folder, timed
from transformers import AutoProcessor, Florence2ForConditionalGeneration

import zoo
from zoo_florence2 import testing as florence_testing
from zoo.labels import CIFAR10


def plain_captions(model, processor, images, new_tokens):
    """The model card's code, one image at a time: the processor, generate with 3 beams, post-processing."""
    texts = []
    for image in images:
        inputs = processor(text="<CAPTION>", images=image, return_tensors="pt").to(model.device, model.dtype)
        with torch.inference_mode():
            ids = model.generate(**inputs, max_new_tokens=new_tokens, num_beams=3, do_sample=False)
        text = processor.batch_decode(ids, skip_special_tokens=False)[0]
        texts.append(processor.post_process_generation(text, task="<CAPTION>", image_size=image.size)["<CAPTION>"])
    return texts


def main():
    options = parser(__doc__)
    options.add_argument("--size", choices=list(florence_testing.FLORENCE2_SIZES), default="base")
    options.add_argument("--images", type=int, default=32)
    options.add_argument("--batch-size", type=int, default=16)
    options.add_argument("--new-tokens", type=int, default=32)
    args = options.parse_args()

    folder = scratch_folder("zoo-florence2-")
    florence_testing.florence2(folder, size=args.size)
    model = zoo.load("florence-2-base", weights=folder, device=args.device, dtype=args.dtype,
                     batch_size=args.batch_size)
    # Fixed-length generation on both paths, so tokens/s compare like for like.
    model.model.generation_config.min_new_tokens = args.new_tokens
    images = random_images(args.images, 480, 640)

    plain = Florence2ForConditionalGeneration.from_pretrained(folder, dtype=model.dtype).to(model.device).eval()
    plain.generation_config.min_new_tokens = args.new_tokens

    processor = AutoProcessor.from_pretrained(folder)
    plain_captions(plain, processor, images[:1], args.new_tokens)  # warm-up
    model.describe(images[:args.batch_size], max_new_tokens=args.new_tokens)  # warm-up
    plain_texts, plain_s = timed(lambda: plain_captions(plain, processor, images, args.new_tokens))
    zoo_texts, zoo_s = timed(lambda: model.describe(images, max_new_tokens=args.new_tokens))
    _, classify_s = timed(lambda: model.classify(images, labels=list(CIFAR10)))
    result = {
        "size": args.size, "device": str(model.device), "dtype": str(model.dtype), "attention": model.attention,
        "images": args.images, "batch_size": args.batch_size, "new_tokens": args.new_tokens,
        "plain_img_s": args.images / plain_s, "zoo_img_s": args.images / zoo_s, "speedup": plain_s / zoo_s,
        "identical_outputs": plain_texts == zoo_texts, "classify_10_labels_img_s": args.images / classify_s,
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
