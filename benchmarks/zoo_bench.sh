#!/usr/bin/env bash
# The whole zoo on the CIFAR-10 test set: every registered model runs if its weights are available here,
# the others get a row saying why not. On CPU use --limit; on a GPU drop it for the full test set.
# Usage: benchmarks/zoo_bench.sh DATA_ROOT [extra zoo bench options]
set -euo pipefail
root=${1:?usage: benchmarks/zoo_bench.sh DATA_ROOT [options]}
shift
out=docs/benchmarks
mkdir -p "$out"
# A linear probe of vit-cifar's own embeddings shows the probe route next to the classifier head.
zoo probe vit-cifar --dataset cifar10 --data-root "$root" --limit 5000 --test-limit 2000 --name vit-cifar+probe
zoo bench vit-cifar vit-cifar+probe deit-tiny beit-base dino-vits16 mae-vitb16 florence-2-base \
  qwen2-vl-2b-instruct --dataset cifar10 --data-root "$root" --plot "$out/zoo-bench.png" \
  --report "$out/zoo-bench.html" "$@" | tee "$out/zoo-bench.txt"
zoo results --last 1 --export md "$out/zoo-bench.md"
