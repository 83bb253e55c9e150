"""What the benchmark scripts share: arguments, scratch folders, GPU-synchronised timing, random images, reporting."""

import argparse
import atexit
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def parser(doc):
    """An argument parser with the options every benchmark takes."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cpu or cuda [cuda when present]")
    p.add_argument("--dtype", default=None, help="float32 or bfloat16 [bf16 on CUDA]")
    p.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    return p


def scratch_folder(prefix):
    """A temporary folder removed when the benchmark exits: what a run writes there (a real-size checkpoint,
    thousands of photos) can be gigabytes, and repeated runs must not fill the disk."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn):
    """(fn's result, seconds), with queued GPU work finished before and after."""
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - start


def device_of(args):
    return torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))


@contextlib.contextmanager
def gpu_busy(device):
    """{"gpu_util_pct": mean GPU utilisation over the block, sampled by nvidia-smi every 100 ms; None off a GPU}."""
    found = {"gpu_util_pct": None}
    if device.type != "cuda" or not shutil.which("nvidia-smi"):
        yield found
        return
    sampler = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                "-lms", "100", "-i", str(device.index or 0)], stdout=subprocess.PIPE, text=True)
    try:
        yield found
    finally:
        sampler.terminate()
        samples = [float(x) for x in sampler.communicate()[0].split() if x.isdigit()]
        found["gpu_util_pct"] = sum(samples) / len(samples) if samples else None


def random_images(n, height, width, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)) for _ in range(n)]


def peak_rss_mb():
    """This process's peak resident memory. Linux's VmHWM belongs to the address space, which exec starts afresh;
    getrusage's ru_maxrss does not: a child process starts with its parent's peak, which hid the child's own."""
    status = Path("/proc/self/status")
    if status.exists():
        line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def environment():
    """What a figure was measured with: the command, the machine, the GPU and the versions that matter."""
    import os
    import platform
    import sys
    from importlib import metadata

    versions = {}
    for name in ("zoo", "torch", "torchvision", "timm", "transformers", "qwen-vl-utils", "av", "ray"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return {"command": " ".join(["python", *sys.argv]), "python": platform.python_version(),
            "machine": platform.machine(), "cpu_cores": os.cpu_count(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None, "versions": versions}


def report(result, out):
    """Print the result (a dict) with its environment, and write it to `out` as JSON."""
    result = {**result, "environment": environment()}
    print(json.dumps(result, indent=2))
    if out:
        out.write_text(json.dumps(result, indent=2))
