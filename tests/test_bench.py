"""zoo bench: every protocol, failure rows, the results store, --limit, pictures, CLI, a real accuracy check."""

import json
from pathlib import Path

import pytest
import timm
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

import zoo
from zoo import bench, probe, results
from zoo.cli import build_cli
from zoo.datasets import cifar10_sample

TINY = {"depth": 1, "embed_dim": 32, "num_heads": 2}


@pytest.fixture
def tiny_deit(tmp_path):
    torch.manual_seed(0)
    module = timm.create_model("deit_tiny_patch16_224.fb_in1k", **TINY)
    path = tmp_path / "deit.safetensors"
    save_file(module.state_dict(), str(path))
    zoo.register({"name": "tiny-deit", "plugin": "timm", "architecture": "deit_tiny_patch16_224.fb_in1k",
                  "model_args": TINY, "weights": {"path": str(path)}, "labels": "imagenet-1k",
                  "tasks": ["classify", "embed"]})
    return "tiny-deit"


@pytest.fixture
def florence_dir(florence2_tiny):
    return florence2_tiny


@pytest.fixture
def tiny_florence(florence_dir):
    zoo.register({"name": "tiny-florence", "plugin": "florence2", "architecture": "florence2",
                  "weights": {"path": str(florence_dir)}, "tasks": ["describe", "detect", "classify"]})
    return "tiny-florence"


def run(models, **options):
    return bench.compare(models, dataset="cifar10-sample", **options)


def test_every_protocol_and_auto_routes(tiny_deit, tiny_florence):
    table = run(["vit-cifar", tiny_deit, tiny_florence], limit=20, train_limit=40)
    assert [r["protocol"] for r in table] == ["head", "probe", "zero-shot"]
    for row in table:
        assert row["status"] == "ok" and row["n"] == 20 and 0 <= row["top1"] <= row["top5"] <= 1
        assert row["throughput"] > 0 and row["latency_p50_ms"] <= row["latency_p95_ms"]
        assert row["params"] > 0 and row["load_time_s"] >= 0 and row["peak_memory_mb"] > 0
        assert row["device"] == "cpu" and row["dtype"] == "float32" and row["versions"]["torch"]
        assert len(row["confusion"]) == 10 and set(row["per_class"]) == set(cifar10_sample().classes)
    assert table.rows[0]["attention"] == "sdpa" and table.rows[2]["attention"] == "sdpa"
    knn = run([tiny_deit], protocol="knn", limit=20, train_limit=40).rows[0]
    assert knn["protocol"] == "knn" and knn["status"] == "ok"
    head = run(["vit-cifar"], protocol="probe", limit=10, train_limit=40).rows[0]
    assert head["protocol"] == "probe"


def test_knn_votes_are_dinos_weighted_vote_in_chunks_of_queries():
    """Each query's k nearest training embeddings (cosine) vote exp(similarity / 0.07) for their class; queries go
    a chunk at a time, so memory does not grow with queries x training images."""
    torch.manual_seed(0)
    train, targets, queries = torch.randn(300, 8), torch.randint(0, 4, (300,)), torch.randn(probe.KNN_CHUNK + 5, 8)
    votes = probe.knn_predict(train, targets.tolist(), queries, 4, k=5)
    for i in (0, probe.KNN_CHUNK + 4):
        similarity = torch.nn.functional.cosine_similarity(queries[i][None], train)
        nearest = similarity.topk(5).indices
        expected = torch.zeros(4).index_add_(0, targets[nearest], (similarity[nearest] / 0.07).exp())
        assert torch.allclose(votes[i], expected, rtol=1e-4)


def test_failures_get_a_row_with_the_reason_and_others_run(tiny_deit):
    table = run(["deit-small", "vit-cifar", tiny_deit], protocol="head", limit=10)
    assert [r["status"] for r in table] == ["failed", "ok", "failed"]
    assert "MissingWeights" in table.rows[0]["error"] and "weights=PATH" in table.rows[0]["error"]
    assert "--protocol head" in table.rows[2]["error"]
    assert str(table).splitlines()[-2].startswith("deit-small: FAILED: MissingWeights")  # printed, the reason shows
    with pytest.raises(zoo.UnknownModel):
        run(["no-such-model"])
    shown = CliRunner().invoke(build_cli(), ["results"]).output
    assert "ERROR" in shown.splitlines()[0] and "MissingWeights" in shown
    as_json = json.loads(CliRunner().invoke(build_cli(), ["results", "--json"]).output)
    assert [r["status"] for r in as_json] == ["failed", "ok", "failed"]
    assert [r["model"] for r in run("vit-cifar", protocol="head", limit=4)] == ["vit-cifar"]  # a name, not letters


def test_rows_survive_an_interruption_between_models(monkeypatch, tiny_deit):
    real = bench.bench_one

    def interrupt_second(name, *args, **kwargs):
        if name == tiny_deit:
            raise KeyboardInterrupt
        return real(name, *args, **kwargs)

    monkeypatch.setattr(bench, "bench_one", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        run(["vit-cifar", tiny_deit], limit=10)
    rows = results.query()
    assert [(r["model"], r["status"]) for r in rows] == [("vit-cifar", "ok")]


def test_limit_is_deterministic_and_results_compare_runs():
    first, second = run(["vit-cifar"], limit=30).rows[0], run(["vit-cifar"], limit=30).rows[0]
    assert first["top1"] == second["top1"] and first["confusion"] == second["confusion"]
    assert run(["vit-cifar"], limit=30, seed=1).rows[0]["confusion"] != first["confusion"]
    rows = results.query(model="vit-cifar")
    assert rows[0]["delta_top1"] is None and rows[1]["delta_top1"] == 0
    assert len(results.query(last=1)) == 1


def test_exports(tmp_path):
    run(["vit-cifar"], limit=10)
    rows = results.query()
    for fmt in ("csv", "json", "md"):
        results.export(rows, fmt, tmp_path / f"out.{fmt}")
    assert json.loads((tmp_path / "out.json").read_text())[0]["model"] == "vit-cifar"
    assert (tmp_path / "out.csv").read_text().splitlines()[0].startswith("id,run_id,created_at,model")
    assert (tmp_path / "out.md").read_text().startswith("| model | protocol | top1")
    table = run(["vit-cifar"], limit=10)
    table.save(tmp_path / "table.md")
    assert "vit-cifar" in str(table) and "vit-cifar" in (tmp_path / "table.md").read_text()


def test_figures_in_a_column_show_the_same_precision():
    assert [results.fmt(v, "latency_p50_ms") for v in (3.0, 3.14, 0.5, 12.345)] == ["3.00", "3.14", "0.500", "12.3"]
    assert results.fmt(0.8, "top1") == "0.8000" and results.fmt(None, "top1") == "-"


def test_accuracy_on_real_cifar_images_matches_an_independent_computation():
    """The bundled sample is real CIFAR-10; compute top-1 by hand from the raw module and compare."""
    data = cifar10_sample(split="all")
    row = bench.compare(["vit-cifar"], dataset="cifar10-sample", split="all").rows[0]
    model = zoo.load("vit-cifar")
    pre = model.preprocess
    x = torch.tensor(torch.stack([torch.from_numpy(i) for i in data.items]).numpy()).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
    with torch.no_grad():
        predicted = model.module(x).argmax(1)
    expected = (predicted == torch.tensor(data.targets)).float().mean().item()
    assert row["n"] == 200 and row["top1"] == pytest.approx(expected)


def test_cli_bench_plot_report_and_results(tmp_path):
    runner = CliRunner()
    result = runner.invoke(build_cli(), ["bench", "vit-cifar", "--dataset", "cifar10-sample", "--limit", "20",
                                         "--plot", str(tmp_path / "b.png"), "--report", str(tmp_path / "b.html")])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == [c.upper() for c in results.SUMMARY]
    assert "input/s" not in result.stderr  # progress bars are for terminals; CliRunner's stderr is not one
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "b.png").stat().st_size > 10_000
    page = (tmp_path / "b.html").read_text()
    assert "data:image/png;base64," in page and "vit-cifar" in page and "Per-class" in page
    result = runner.invoke(build_cli(), ["results", "--model", "vit-cifar"])
    assert result.exit_code == 0 and "vit-cifar" in result.output and "DELTA" in result.output
    result = runner.invoke(build_cli(), ["results", "--export", "csv", str(tmp_path / "r.csv")])
    assert result.exit_code == 0 and result.output == f"Wrote 1 rows to {tmp_path / 'r.csv'}\n"
    result = runner.invoke(build_cli(), ["bench", "deit-small", "--dataset", "cifar10-sample", "--limit", "5"])
    assert result.exit_code == 1 and "Every model failed" in result.output


def test_image_folder_dataset(tmp_path, samples):
    import os
    import shutil

    folder = tmp_path / os.fsdecode(b"photos-caf\xe9")  # a name that is not UTF-8 goes into results escaped
    for name in ("cat", "dog"):
        (folder / name).mkdir(parents=True)
        shutil.copy(samples / f"{name}.png", folder / name / "a.png")
    row = bench.compare(["vit-cifar"], dataset=str(folder)).rows[0]
    assert row["status"] == "ok" and row["n"] == 2 and row["protocol"] == "head"
    assert row["dataset"] == "photos-caf\\xe9" and results.query(last=1)[0]["dataset"] == "photos-caf\\xe9"
    # Asked for by the folder's own name (bytes that are not UTF-8, as a shell passes them), the run is found.
    result = CliRunner().invoke(build_cli(), ["results", "--dataset", folder.name, "--json"])
    assert result.exit_code == 0 and [r["run_id"] for r in json.loads(result.output)] == [row["run_id"]]


def test_table_to_pandas():
    frame = run(["vit-cifar"], limit=10).to_pandas()
    assert list(frame["model"]) == ["vit-cifar"] and frame.loc[0, "n"] == 10


def test_the_example_plugins_model_benchmarks_like_any_other():
    """A plugin model that writes only classify_batch gets batching, options and bench for free."""
    table = bench.compare(["example-colour"], dataset="example-colours")
    row = table.rows[0]
    assert row["status"] == "ok", row.get("error")
    assert row["protocol"] == "head" and row["top1"] == 1.0 and row["batch_size"] == zoo.Model.default_batch_size


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux resets peaks")
def test_each_model_reports_its_own_peak_memory_not_the_largest_before_it():
    class Heavy(torch.nn.Module):
        def __init__(self, megabytes):
            super().__init__()
            self.ballast = torch.nn.Parameter(torch.ones(megabytes * 2**18))  # touched: resident
            self.head = torch.nn.Linear(3, 10)

        def forward(self, x):
            return self.head(x.mean(dim=(2, 3)))

    preprocess = {"input_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3}
    zoo.register_model("heavy-600mb", labels=list(cifar10_sample().classes), preprocess=preprocess)(lambda: Heavy(600))
    zoo.register_model("light-1mb", labels=list(cifar10_sample().classes), preprocess=preprocess)(lambda: Heavy(1))
    heavy, light = run(["heavy-600mb", "light-1mb"], limit=8).rows
    assert heavy["status"] == light["status"] == "ok"
    assert heavy["peak_memory_mb"] - light["peak_memory_mb"] > 400  # the light one was 600 MB heavier before
