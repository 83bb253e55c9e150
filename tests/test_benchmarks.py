"""Every benchmark script runs end to end at a tiny size, as docs/benchmarks.md writes its command.

The figures themselves are measured by hand (on a GPU where the targets ask for one); this only keeps the scripts
working as the code under them changes, so that a session lent a GPU spends its minutes measuring.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

BENCHMARKS = ROOT / "benchmarks"

# Each script's arguments ({data}: a CIFAR-10 root, {tmp}: this test's folder), and a check of its JSON result.
CASES = {
    "timm": (["timm_throughput.py", "--models", "deit_tiny_patch16_224", "--batch-size", "2", "--repeats", "1",
              "--files-repeats", "1"], lambda r: r["rows"][0]["tensor_ratio"] > 0 and r["rows"][0]["files_ratio"] > 0),
    "florence2": (["florence2_speed.py", "--size", "tiny", "--images", "3", "--batch-size", "2", "--new-tokens", "4"],
                  lambda r: r["identical_outputs"]),
    "qwen2vl": (["qwen2vl_speed.py", "--size", "tiny", "--new-tokens", "4", "--batch-size", "2",
                 "--classify-images", "2", "--dtype", "float32"], lambda r: r["identical_answers"]),
    "video": (["video_reading.py", "--seconds", "1", "--size", "64", "48", "--repeats", "1"],
              lambda r: r["same_frames"] and len(r["rows"]) == 2),
    "stream-memory": (["stream_memory.py", "--counts", "4", "8"], lambda r: [row["rows"] for row in r["rows"]] == [4, 8]),
    **{f"vit-cifar-{preset}": (["vit_cifar.py", "--preset", preset, "--epochs", "1", "--batch-size", "32",
                                 "--data-root", "{data}", "--run-dir", "{tmp}/run"],
                                lambda r: r["epochs"] == 1 and 0 <= r["test_top1"] <= 1) for preset in ("cpu", "best")},
    # the cpu preset: the best one's profile adds torch.compile's build, which vit-cifar-best already runs (a minute)
    "vit-cifar-profile": (["vit_cifar.py", "--preset", "cpu", "--batch-size", "32", "--data-root", "{data}",
                           "--run-dir", "{tmp}/run", "--profile", "2"],
                          lambda r: r["step_ms"] > 0 and list(r["sections_per_step"]) == ["augment", "forward",
                                                                                         "backward", "optimizer"]),
    **{f"bulk-{which}": (["bulk_inference.py", which, *args], check) for which, args, check in [
        ("files", ["--photos", "8", "--batch-size", "4", "--repeats", "1"], lambda r: r["same_top1"] == 1.0),
        ("reading", ["--photos", "8", "--batch-size", "4"], lambda r: r["zoo_done"] == 8),
        ("arrays", ["--data-root", "{data}", "--repeats", "1"], lambda r: r["same_top1"] == 1.0),
        ("memory", ["--counts", "4", "8"], lambda r: [row["done"] for row in r["rows"]] == [4, 8]),
        ("ray", ["--photos", "8", "--batch-size", "4", "--repeats", "1"], lambda r: r["ratio"] > 0),
        ("closing", ["--rows", "50"], lambda r: len(r["rows"]) == 4),
        ("listing", ["--lines", "100"], lambda r: [row["paths"] for row in r["rows"]] == [100, 100, 100]),
        ("resume", ["--names", "600"], lambda r: [row["done"] for row in r["rows"]] == [600, 600]),
    ]},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_benchmark_script_runs(name, tmp_path, cifar_root, subprocess_env):
    args, check = CASES[name]
    args = [a.format(data=cifar_root, tmp=tmp_path) for a in args]
    out = tmp_path / "result.json"
    done = subprocess.run([sys.executable, *args, "--out", str(out)], cwd=BENCHMARKS, capture_output=True, text=True,
                          env={**subprocess_env, "TMPDIR": str(tmp_path)}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert check(json.loads(out.read_text())), out.read_text()[:3000]


@pytest.mark.slow
def test_the_vit_cifar_benchmark_goes_on_from_its_checkpoint(tmp_path, cifar_root, subprocess_env):
    """A GPU command stops at 10 minutes: the next call goes on with --resume instead of starting again."""
    args = ["vit_cifar.py", "--preset", "cpu", "--epochs", "1", "--batch-size", "32", "--data-root", str(cifar_root),
            "--run-dir", str(tmp_path / "run")]
    results = []
    for extra in ([], ["--resume"]):
        out = tmp_path / f"result{len(results)}.json"
        done = subprocess.run([sys.executable, *args, *extra, "--out", str(out)], cwd=BENCHMARKS, capture_output=True,
                              text=True, env=subprocess_env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        results.append(json.loads(out.read_text()))
    assert results[1]["resumed"] and results[1]["epochs"] == 1  # the finished epoch, not trained again
    assert results[1]["train_time_s"] == results[0]["train_time_s"]


@pytest.mark.slow
def test_zoo_bench_script_runs(tmp_path, cifar_root, subprocess_env):
    """benchmarks/zoo_bench.sh: the probe, then the whole catalogue; models without weights here get a row."""
    scripts = os.path.dirname(sys.executable)
    if not shutil.which("zoo", path=scripts):
        pytest.skip("the zoo command is not installed beside this Python")
    env = {**subprocess_env, "PATH": scripts + os.pathsep + os.environ["PATH"], "ZOO_OFFLINE": "1"}
    done = subprocess.run(["bash", str(BENCHMARKS / "zoo_bench.sh"), str(cifar_root), "--limit", "20"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "docs" / "benchmarks" / "zoo-bench.md").read_text()
    assert "| vit-cifar+probe | head |" in table and "| deit-tiny | - |" in table  # no weights offline: a row
