"""zoo's timm embed/classify throughput against raw timm, in the same run (random weights).

Raw timm is the reference usage: timm.create_model + bf16 autocast (CUDA), eval, fixed batches. zoo is measured
twice: from uint8 pixels already on the device (resize done), and end to end from encoded JPEG files
(decode, resize, normalise, forward). Raw timm end to end decodes with PIL and timm's own transform.

    python benchmarks/timm_throughput.py --models deit_tiny_patch16_224 deit_small_patch16_224 --batch-size 256
"""

import numpy as np
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from common import parser, report, scratch_folder, timed
from timm.data import create_transform, resolve_data_config

import zoo


def repeated(fn, repeats):
    """Seconds for `repeats` calls, after one warm-up call (which also compiles, when on)."""
    fn()
    return timed(lambda: [fn() for _ in range(repeats)])[1]


def zoo_forward(model, pixels):
    """zoo's work on a batch already decoded and resized: normalise on the device, forward (logits stay there)."""
    with torch.inference_mode():
        return model.forward(pixels, model.module)


def jpeg_files(folder, n):
    rng = np.random.default_rng(0)
    files = [folder / f"{i}.jpg" for i in range(n)]
    for path in files:
        Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)).save(path, quality=90)
    return files


def bench(arch, args, folder):
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    raw = timm.create_model(arch, pretrained=False).eval().to(device)
    weights = folder / f"{arch}.safetensors"
    save_file({k: v.contiguous().cpu() for k, v in raw.state_dict().items()}, str(weights))
    model = zoo.load(f"timm:{arch}", weights=weights, device=str(device), batch_size=args.batch_size,
                     compile=args.compile)
    size = model.preprocess.input_size[1:]
    n = args.batch_size

    x = torch.randn(n, 3, *size, device=device)
    pixels = torch.randint(0, 256, (n, 3, *size), dtype=torch.uint8, device=device)

    def raw_forward(batch):
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            return raw(batch)

    results = {"model": arch, "device": str(device), "batch_size": n}
    seconds = repeated(lambda: raw_forward(x), args.repeats)
    results["raw_timm_img_s"] = n * args.repeats / seconds
    seconds = repeated(lambda: zoo_forward(model, pixels), args.repeats)
    results["zoo_tensor_img_s"] = n * args.repeats / seconds

    files = jpeg_files(folder, n)  # end to end from encoded files: the same JPEGs for both
    transform = create_transform(**resolve_data_config({}, model=raw))

    def raw_from_files():
        batch = torch.stack([transform(Image.open(f).convert("RGB")) for f in files]).to(device)
        return raw_forward(batch)

    results["raw_timm_files_img_s"] = n * args.files_repeats / repeated(raw_from_files, args.files_repeats)
    results["zoo_files_img_s"] = n * args.files_repeats / repeated(lambda: model.classify(files, top_k=1),
                                                                   args.files_repeats)
    results["tensor_ratio"] = results["zoo_tensor_img_s"] / results["raw_timm_img_s"]
    results["files_ratio"] = results["zoo_files_img_s"] / results["raw_timm_files_img_s"]
    return results


def main():
    options = parser(__doc__)
    options.add_argument("--models", nargs="+", default=["deit_tiny_patch16_224", "deit_small_patch16_224",
                                                        "deit_base_patch16_224", "beit_base_patch16_224"])
    options.add_argument("--batch-size", type=int, default=256)
    options.add_argument("--repeats", type=int, default=20)
    options.add_argument("--files-repeats", type=int, default=3)
    options.add_argument("--compile", action="store_true", help="torch.compile zoo's module")
    args = options.parse_args()
    folder = scratch_folder("zoo-timm-")
    rows = []
    for arch in args.models:
        r = bench(arch, args, folder)
        rows.append(r)
        print(f"{arch}: raw {r['raw_timm_img_s']:.1f} img/s, zoo {r['zoo_tensor_img_s']:.1f} "
              f"({r['tensor_ratio']:.2f}x); from files raw {r['raw_timm_files_img_s']:.1f}, "
              f"zoo {r['zoo_files_img_s']:.1f} ({r['files_ratio']:.2f}x)", flush=True)
    report({"benchmark": "timm_throughput", "rows": rows}, args.out)


if __name__ == "__main__":
    main()
