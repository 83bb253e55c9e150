"""Peak memory of model.embed over N photos: flat in N when inputs stream through the bounded queue.

Each count runs in a fresh process: deit-tiny at its real size (random weights saved locally), N JPEG photos
of 640x480, embedded with the list API. The figure is the growth of peak RSS over the RSS after loading.

    python benchmarks/stream_memory.py --counts 500 1000 3000 --out docs/benchmarks/stream_memory_cpu.json
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import parser, peak_rss_mb, report, scratch_folder


def write_photos(folder, n, seed=0):
    """Smooth random 640x480 photos (a noise field upscaled), as JPEG files."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
        paths.append(folder / f"photo-{i:05d}.jpg")
        small.resize((640, 480), Image.BILINEAR).save(paths[-1], quality=90)
    return paths


def child(weights, photos, n):
    import zoo

    model = zoo.load("deit-tiny", weights=weights, batch_size=32)
    paths = sorted(Path(photos).glob("*.jpg"))[:n]
    before = peak_rss_mb()
    started = time.perf_counter()
    rows = model.embed(paths)
    seconds = time.perf_counter() - started
    peak = peak_rss_mb()
    print(json.dumps({"n": n, "rows": len(rows), "peak_growth_mb": peak - before, "peak_mb": peak,
                      "images_per_s": n / seconds}))


def main():
    options = parser(__doc__)
    options.add_argument("--counts", type=int, nargs="+", default=[500, 1000, 3000])
    options.add_argument("--child", nargs=3, default=None, help=argparse_hidden())
    args = options.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], int(args.child[2]))
    import timm
    import torch
    from safetensors.torch import save_file

    folder = scratch_folder("zoo-stream-memory-")
    write_photos(folder, max(args.counts))
    torch.manual_seed(0)
    save_file(timm.create_model("deit_tiny_patch16_224.fb_in1k").state_dict(), str(folder / "deit.safetensors"))
    rows = []
    for n in args.counts:
        done = subprocess.run([sys.executable, __file__, "--child", str(folder / "deit.safetensors"), str(folder), str(n)],
                              capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    report({"benchmark": "stream_memory", "model": "deit-tiny (random weights, real size)", "photos": "640x480 JPEG",
            "rows": rows}, args.out)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
