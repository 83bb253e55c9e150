"""Train vit-cifar presets and record accuracy and wall time (the figures in docs/benchmarks.md).

    python benchmarks/vit_cifar.py --preset best --data-root ../shared/data --out docs/benchmarks/vit-cifar-best.json
    torchrun --nproc_per_node 8 benchmarks/vit_cifar.py --preset best ...

Wall time covers the whole run (data loading, compilation, every epoch's evaluation); the metrics file also
holds the training-only time and the per-epoch curve.
"""

import argparse
import time
from pathlib import Path

from common import report
from zoo_vit_cifar.train import train


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--epochs", type=int, default=None, help="Override the preset's epochs.")
    parser.add_argument("--batch-size", type=int, default=None, help="Override the preset's batch size.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", type=Path, default=None, help="Training output [runs/bench-PRESET].")
    parser.add_argument("--out", type=Path, default=None, help="Write the summary JSON here.")
    parser.add_argument("--resume", action="store_true",
                        help="Go on from --run-dir's checkpoint (a command stopped at a time limit); the training time "
                             "adds up over the calls, the wall time is this call's.")
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
