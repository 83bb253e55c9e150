"""Reading a video for Qwen2-VL: zoo's PyAV reader against the official path, on the same files, same run.

The official path is qwen-vl-utils' torchvision reader over torchvision's `read_video` (here decoded with PyAV as
torchvision did, since torchvision 0.29 has none): it decodes and converts every frame, then samples. zoo counts
the frames from the packets' timestamps, then decodes up to the last frame it keeps and converts only those.
Both must give the same frames; the figure is seconds per video (best of --repeats) and the ratio.

    python benchmarks/video_reading.py --out docs/benchmarks/video_reading_cpu.json
"""

import platform

import numpy as np
import torch
import torchvision.io
from qwen_vl_utils import vision_process

from common import parser, report, scratch_folder, timed
from zoo.testing import write_video
from zoo_qwen2vl.testing import official_read_video
from zoo_qwen2vl.video import read_video


def write_clip(path, codec, seconds, fps, size):
    """A moving random texture, with B-frames (packets out of presentation order)."""
    base = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    write_video(path, (np.roll(base, 4 * i, axis=1) for i in range(seconds * fps)), fps=fps, codec=codec, b_frames=2)


def official(ele):
    torchvision.io.read_video = official_read_video
    try:
        return vision_process._read_video_torchvision(dict(ele))
    finally:
        del torchvision.io.read_video


def best_of(fn, ele, repeats):
    runs = [timed(lambda: fn(ele)) for _ in range(repeats)]
    return runs[0][0][0], min(seconds for _, seconds in runs)


def main():
    options = parser(__doc__)
    options.add_argument("--seconds", type=int, default=20)
    options.add_argument("--size", type=int, nargs=2, default=[1280, 720])
    options.add_argument("--repeats", type=int, default=3)
    args = options.parse_args()
    folder = scratch_folder("zoo-video-reading-")
    rows = []
    for codec in ("mpeg4", "libx264"):
        path = folder / f"{codec}.mp4"
        write_clip(path, codec, args.seconds, 30, tuple(args.size))
        ele = {"video": str(path)}  # qwen-vl-utils' defaults: 2 frames per second
        theirs, their_s = best_of(official, ele, args.repeats)
        ours, our_s = best_of(read_video, ele, args.repeats)
        assert torch.equal(theirs, ours), f"{codec}: zoo's frames differ from the official path's"
        rows.append({"codec": codec, "frames_kept": len(ours), "official_s": round(their_s, 3),
                     "zoo_s": round(our_s, 3), "speedup": round(their_s / our_s, 2)})
    report({"benchmark": "video_reading", "video": f"{args.seconds} s, 30 fps, {args.size[0]}x{args.size[1]}, "
            "B-frames", "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "same_frames": True, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
