"""Bulk inference against the reference loops, in one run (ratios: these machines are noisy).

    python benchmarks/bulk_inference.py files --photos 2000            # zoo.run vs a timm inference.py-style loop
    python benchmarks/bulk_inference.py reading --photos 2000          # the same, the network's work taken out
    python benchmarks/bulk_inference.py arrays --data-root ../shared/data   # vit-cifar vs the raw forward
    python benchmarks/bulk_inference.py memory --counts 1000 5000 20000     # peak RSS against the number of inputs
    python benchmarks/bulk_inference.py ray --photos 2000                # Ray engine vs the local engine
    python benchmarks/bulk_inference.py closing --rows 50000             # peak RSS of finishing an embedding run
    python benchmarks/bulk_inference.py listing --lines 1000000          # peak RSS of walking a list or manifest
    python benchmarks/bulk_inference.py resume --names 1000000           # peak RSS of what --resume skips

deit-tiny has random weights at its real size, saved locally; photos are 640x480 JPEGs. Results go to --out.
"""

import collections
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import device_of, gpu_busy, parser, peak_rss_mb, report, scratch_folder, timed
from stream_memory import write_photos

TINY_ARCH = "deit_tiny_patch16_224.fb_in1k"
HERE = str(Path(__file__).resolve().parent)


def child_numbers(code, *args):
    """Run `code` in a fresh Python process (its peak memory its own, and `common` importable there); the numbers
    its last line prints."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")]))}
    output = subprocess.check_output([sys.executable, "-c", code, *map(str, args)], text=True, env=env)
    return [float(x) for x in output.splitlines()[-1].split()]


def deit_weights(folder):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = folder / "deit.safetensors"
    save_file(timm.create_model(TINY_ARCH).state_dict(), str(path))
    return path


def timm_loop(weights, paths, batch_size, device, workers):
    """timm's inference.py, in short: ImageDataset-like loading in a DataLoader (2 workers, as its default), timm's
    transform, bf16 autocast on CUDA (zoo's default dtype there)."""
    import timm
    from safetensors.torch import load_file

    model = timm.create_model(TINY_ARCH).eval()
    model.load_state_dict(load_file(weights))
    model.to(device)
    top1 = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for x in timm_batches(model, paths, batch_size, device, workers):
            top1 += model(x).softmax(-1).topk(5).indices[:, 0].tolist()
    return top1


def timm_batches(model, paths, batch_size, device, workers):
    """The photos as inference.py reads them for `model`, in batches on the device."""
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    transform = create_transform(**resolve_data_config({}, model=model))

    class Files(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            return transform(Image.open(paths[i]).convert("RGB"))

    cuda = device.type == "cuda"
    loader = torch.utils.data.DataLoader(Files(), batch_size=batch_size, num_workers=workers or 2, pin_memory=cuda)
    return (x.to(device, non_blocking=True) for x in loader)


def files(args, folder):
    """zoo.run against timm's loop on the same photos; on a GPU, with each one's mean GPU utilisation."""
    import pyarrow.parquet as pq

    import zoo

    device = device_of(args)
    paths = write_photos(folder, args.photos)
    weights = deit_weights(folder)
    with gpu_busy(device) as timm_busy:
        reference, timm_s = timed(lambda: timm_loop(weights, paths, args.batch_size, device, args.workers))
    load = {"weights": weights, "batch_size": args.batch_size, "device": str(device), "workers": args.workers}
    with gpu_busy(device) as zoo_busy:
        _, zoo_s = timed(lambda: zoo.run("deit-tiny", folder, task="classify", out=folder / "preds.parquet",
                                         load={k: v for k, v in load.items() if v is not None}, progress=False))
    ours = [r["predictions"][0]["index"] for r in pq.read_table(folder / "preds.parquet").to_pylist()]
    return {"photos": len(paths), "device": str(device), "gpu": torch.cuda.get_device_name(device) if
            device.type == "cuda" else None, "timm_loop_img_s": len(paths) / timm_s, "zoo_run_img_s": len(paths) / zoo_s,
            "ratio": timm_s / zoo_s, "same_top1": float(np.mean(np.asarray(ours) == np.asarray(reference))),
            "timm_loop_gpu_util_pct": timm_busy["gpu_util_pct"], "zoo_run_gpu_util_pct": zoo_busy["gpu_util_pct"]}


def reading(args, folder):
    """`files` with the network's work taken out, as on a GPU much faster than the decoding: zoo.run, its forward
    giving random logits at once, against timm's loop that only reads its batches onto the device. What is left is
    each one's reading, decoding, batching and (zoo) writing; both with the same number of decoding workers."""
    import timm

    import zoo

    device, workers = device_of(args), args.workers or 2
    paths = write_photos(folder, args.photos)
    model = zoo.load("deit-tiny", weights=deit_weights(folder), batch_size=args.batch_size, device=str(device),
                     workers=workers)
    model.forward = lambda pixels, fn: torch.randn(len(pixels), len(model.labels), device=device)
    model.collate, collating = timed_calls(model.collate)
    _, timm_s = timed(lambda: collections.deque(timm_batches(timm.create_model(TINY_ARCH), paths, args.batch_size,
                                                             device, workers), maxlen=0))
    summary, zoo_s = timed(lambda: zoo.run(model, folder, task="classify", out=folder / "preds.parquet",
                                           progress=False))
    return {"photos": len(paths), "zoo_done": summary.done, "device": str(device), "workers": workers,
            "timm_reading_img_s": len(paths) / timm_s, "zoo_run_img_s": len(paths) / zoo_s, "ratio": timm_s / zoo_s,
            "zoo_collate_ms": {"median": 1000 * float(np.median(collating)), "max": 1000 * max(collating)}}


def timed_calls(fn):
    """fn, timing each call into the list returned beside it."""
    seconds = []

    def timed_fn(*args):
        started = time.perf_counter()
        result = fn(*args)
        seconds.append(time.perf_counter() - started)
        return result

    return timed_fn, seconds


def arrays(args, folder):
    """Best of --repeats interleaved runs each, after a warm-up: the machine is noisy."""
    import zoo
    from zoo.datasets import cifar10

    data = cifar10(args.data_root, "test")
    model = zoo.load("vit-cifar", batch_size=args.batch_size)
    pre = model.preprocess
    x = torch.from_numpy(np.stack(data.items)).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)

    def raw():
        with torch.inference_mode():
            return torch.cat([model.module(b).softmax(-1).topk(5).indices for b in x.split(args.batch_size)])

    model.classify(data.items[:1000]), raw()
    raw_s, zoo_s = [], []
    for _ in range(args.repeats):
        top, seconds = timed(raw)
        raw_s.append(seconds)
        ours, seconds = timed(lambda: model.classify(data.items))
        zoo_s.append(seconds)
    same = float(np.mean([p[0].index == r for p, r in zip(ours, top[:, 0].tolist())]))
    return {"images": len(data), "batch_size": args.batch_size, "raw_forward_img_s": len(data) / min(raw_s),
            "zoo_classify_img_s": len(data) / min(zoo_s), "ratio": min(raw_s) / min(zoo_s), "same_top1": same}


def memory(args, folder):
    from PIL import Image

    from zoo.datasets import cifar10_sample

    images = cifar10_sample(split="all").items
    for i in range(max(args.counts)):
        Image.fromarray(images[i % len(images)]).save(folder / f"{i:06d}.png")
    rows = []
    for n in args.counts:
        out = folder / f"m{n}.parquet"
        code = (f"import zoo\nfrom common import peak_rss_mb\n"
                f"paths = sorted(__import__('pathlib').Path({str(folder)!r}).glob('*.png'))[:{n}]\n"
                f"before = peak_rss_mb()\n"
                f"s = zoo.run('vit-cifar', [str(p) for p in paths], task='classify', out={str(out)!r},"
                f" progress=False)\n"
                f"print(s.done, before, peak_rss_mb())")
        done, before, peak = child_numbers(code)
        rows.append({"inputs": n, "done": int(done), "peak_rss_mb": peak, "growth_mb": peak - before})
    return {"model": "vit-cifar", "rows": rows}


def ray_engine(args, folder):
    import ray

    import zoo

    write_photos(folder, args.photos)
    weights = deit_weights(folder)
    load = {"weights": str(weights), "batch_size": args.batch_size}
    started = time.perf_counter()
    zoo.run("deit-tiny", folder, task="classify", out=folder / "local.parquet", load=load, progress=False)
    local_s = time.perf_counter() - started
    started = time.perf_counter()
    ray.init(include_dashboard=False, logging_level="WARNING")
    startup_s = time.perf_counter() - started
    started = time.perf_counter()
    zoo.run("deit-tiny", folder, task="classify", out=folder / "ray.parquet", engine="ray", load=load,
            concurrency=args.concurrency)
    ray_s = time.perf_counter() - started
    return {"photos": args.photos, "local_img_s": args.photos / local_s, "ray_img_s": args.photos / ray_s,
            "ratio": local_s / ray_s, "ray_startup_s": startup_s, "concurrency": args.concurrency}


CLOSING = """
import sys, numpy as np
from pathlib import Path
from zoo.outputs import Writer
from common import peak_rss_mb
out, count, dim = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
vector = np.random.default_rng(0).standard_normal(dim, dtype=np.float32).tolist()
with Writer(out, "embed", "m") as writer:
    for start in range(0, count, 256):
        writer.write([{"input": f"photos/{i:08d}.jpg", "task": "embed", "model": "m", "frame_time": None,
                       "embedding": vector, "error": None} for i in range(start, min(start + 256, count))])
    before = peak_rss_mb()
    writer.close()
print(before, peak_rss_mb())
"""


def closing(args, folder):
    """Peak memory of turning the parts of a long embedding run (--rows x 768 floats) into each output file,
    each in a fresh process: what closing adds on top of the run itself."""
    rows = []
    for suffix in (".parquet", ".jsonl", ".npy", ".safetensors"):
        out = folder / f"embeddings{suffix}"
        before, peak = child_numbers(CLOSING, out, args.rows, 768)
        rows.append({"format": suffix, "rows": args.rows, "dim": 768, "data_mb": args.rows * 768 * 4 / 2**20,
                     "close_growth_mb": peak - before})
    return {"rows": rows}


LISTING = """
import sys
from zoo.sources import Sources
from common import peak_rss_mb
before = peak_rss_mb()
count = sum(1 for _ in Sources().items(sys.argv[1]))
print(count, before, peak_rss_mb())
"""


def listing(args, folder):
    """Peak memory of walking a list file, a CSV and a Parquet manifest of --lines paths (files that need not
    exist: the walk names them, the run would read them), each in a fresh process."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = [f"/data/train/class_{i % 1000:04d}/image_{i:08d}.jpg" for i in range(args.lines)]
    (folder / "list.txt").write_text("\n".join(paths) + "\n")
    (folder / "manifest.csv").write_text("path\n" + "\n".join(paths) + "\n")
    pq.write_table(pa.table({"path": paths}), folder / "manifest.parquet")
    rows = []
    for name in ("list.txt", "manifest.csv", "manifest.parquet"):
        count, before, peak = child_numbers(LISTING, folder / name)
        rows.append({"source": name, "paths": int(count), "growth_mb": peak - before})
    return {"rows": rows}


RESUMING = """
import sys
import pyarrow.parquet as pq
from zoo.outputs import Writer
from common import peak_rss_mb
out, how = sys.argv[1], sys.argv[2]
with Writer(out, "classify", "m", resume=True) as writer:
    pq.read_table(writer.part_files()[0], columns=["input"])  # the reader's one-off start-up (about 50 MB) is not the names' cost
    before = peak_rss_mb()
    if how == "keyset":
        done = writer.done()
    else:  # what zoo did before: a Python set of the names
        done = {key for part in writer.part_files()
                for key in pq.read_table(part, columns=["input"]).column(0).to_pylist()}
    print(len(done), before, peak_rss_mb())
"""


def resume(args, folder):
    """Peak memory of knowing what a killed run of --names inputs wrote (its parts, as it left them), which
    --resume skips: zoo's 16-byte digests against a Python set of the names, each in a fresh process."""
    from zoo.bulk import CHUNK_ROWS
    from zoo.outputs import Writer

    out = folder / "preds.parquet"
    with Writer(out, "classify", "m") as writer:  # killed before close: only the parts are there
        for start in range(0, args.names, CHUNK_ROWS):
            writer.write([{"input": f"/data/train/class_{i % 1000:04d}/image_{i:08d}.jpg", "task": "classify",
                           "model": "m", "frame_time": None, "predictions": [], "error": None}
                          for i in range(start, min(start + CHUNK_ROWS, args.names))])
    rows = []
    for how in ("keyset", "python set"):
        count, before, peak = child_numbers(RESUMING, out, how.split()[-1])
        rows.append({"names": how, "done": int(count), "growth_mb": peak - before})
    return {"rows": rows}


def main():
    options = parser(__doc__)
    options.add_argument("which", choices=["files", "reading", "arrays", "memory", "ray", "closing", "listing",
                                           "resume"])
    options.add_argument("--photos", type=int, default=2000)
    options.add_argument("--batch-size", type=int, default=32)
    options.add_argument("--workers", type=int, default=None,
                         help="decoding workers of both loops ['files': timm's loop 2, as inference.py, zoo 4; "
                              "'reading': 2 each]")
    options.add_argument("--data-root", default="../shared/data")
    options.add_argument("--counts", type=int, nargs="+", default=[1000, 5000, 20000])
    options.add_argument("--concurrency", type=int, default=2)
    options.add_argument("--repeats", type=int, default=3)
    options.add_argument("--rows", type=int, default=50000, help="Embedding rows for 'closing'.")
    options.add_argument("--names", type=int, default=1_000_000, help="Inputs a killed run wrote, for 'resume'.")
    options.add_argument("--lines", type=int, default=1_000_000, help="Paths in the list and manifests of 'listing'.")
    args = options.parse_args()
    folder = scratch_folder("zoo-bulk-")
    scenarios = {"files": files, "reading": reading, "arrays": arrays, "memory": memory, "ray": ray_engine,
                 "closing": closing, "listing": listing, "resume": resume}
    result = scenarios[args.which](args, folder)
    report({"benchmark": f"bulk_inference {args.which}", "torch_threads": torch.get_num_threads(),
            "peak_rss_mb": peak_rss_mb(), **result}, args.out)


if __name__ == "__main__":
    main()
