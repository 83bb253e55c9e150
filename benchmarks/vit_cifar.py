"""Train vit-cifar presets and record accuracy and wall time (the figures in docs/benchmarks.md).

    python benchmarks/vit_cifar.py --preset best --data-root ../shared/data --out docs/benchmarks/vit-cifar-best.json
    torchrun --nproc_per_node 8 benchmarks/vit_cifar.py --preset best ...
    python benchmarks/vit_cifar.py --preset best --data-root ../shared/data --profile 30   # where a step's time goes

Wall time covers the whole run (data loading, compilation, every epoch's evaluation); the metrics file also
holds the training-only time and the per-epoch curve.
"""

import argparse
import time
from pathlib import Path

import torch
from common import gpu_busy, report, sync
from torch.profiler import ProfilerActivity, profile
from zoo_vit_cifar.train import start, train, train_step

WARMUP_STEPS = 10  # compilation and cuBLAS/cuDNN autotuning happen here, outside the timing
SECTIONS = ("augment", "forward", "backward", "optimizer")  # record_function names in train_step


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--epochs", type=int, default=None, help="Override the preset's epochs.")
    parser.add_argument("--batch-size", type=int, default=None, help="Override the preset's batch size.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", type=Path, default=None, help="Training output [runs/bench-PRESET].")
    parser.add_argument("--out", type=Path, default=None, help="Write the summary JSON here.")
    parser.add_argument("--profile", type=int, default=None, metavar="STEPS",
                        help="Instead of training: time STEPS steps after warm-up, then profile them (torch.profiler): "
                             "milliseconds per step, GPU utilisation, each section's CPU and GPU time, the top operators.")
    parser.add_argument("--resume", action="store_true",
                        help="Go on from --run-dir's checkpoint (a command stopped at a time limit); the training time "
                             "adds up over the calls, the wall time is this call's.")
    args = parser.parse_args()
    if args.profile:
        return profile_steps(args)
    started = time.perf_counter()
    metrics = train(args.preset, data_root=args.data_root, out=args.run_dir or Path(f"runs/bench-{args.preset}"),
                    seed=args.seed, resume=args.resume, epochs=args.epochs, batch_size=args.batch_size)
    if metrics is None:  # not rank 0
        return
    report({
        "preset": args.preset, "epochs": len(metrics["epochs"]), "test_top1": metrics["test_top1"],
        "test_top5": metrics["test_top5"], "wall_time_s": round(time.perf_counter() - started, 1),
        "train_time_s": metrics["train_time_s"], "processes": metrics["processes"], "device": metrics["device"],
        "final_train_loss": metrics["epochs"][-1]["train_loss"], "resumed": args.resume,
    }, args.out)


def profile_steps(args):
    """Plain timing first (the profiler slows every operator down), then the same number of steps profiled."""
    run = start(args.preset, data_root=args.data_root, out=args.run_dir or Path(f"runs/profile-{args.preset}"),
                seed=args.seed, resume=False, device=None, limit=None, test_limit=None, progress=False,
                overrides={"epochs": args.epochs, "batch_size": args.batch_size})
    order = torch.randperm(len(run.data[0]), device=run.device)

    def steps(first, count):
        for step in range(first, first + count):
            train_step(run, 0, step % run.steps_per_epoch, order)
        sync()

    steps(0, WARMUP_STEPS)
    with gpu_busy(run.device) as busy:  # well under 100%: the GPU waits for the host (Python, syncs, launches)
        started = time.perf_counter()
        steps(WARMUP_STEPS, args.profile)
        step_s = (time.perf_counter() - started) / args.profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if run.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        steps(WARMUP_STEPS + args.profile, args.profile)
    events = prof.key_averages()
    found = {e.key: e for e in events}
    per_step = {name: {"cpu_ms": round(found[name].cpu_time_total / 1e3 / args.profile, 3),
                       "gpu_ms": round(found[name].device_time_total / 1e3 / args.profile, 3)}
                for name in SECTIONS if name in found}
    sort = "self_device_time_total" if run.device.type == "cuda" else "self_cpu_time_total"
    table = events.table(sort_by=sort, row_limit=25)
    report({
        "preset": args.preset, "batch_size": run.recipe.batch_size, "device": str(run.device), "steps": args.profile,
        "step_ms": round(step_s * 1e3, 2), "images_per_s": round(run.recipe.batch_size / step_s, 1),
        "epoch_s": round(step_s * run.steps_per_epoch, 2), "sections_per_step": per_step,
        **busy, "top_operators": table.splitlines(),
    }, args.out)


if __name__ == "__main__":
    main()
