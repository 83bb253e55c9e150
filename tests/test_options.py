"""Options are declared and checked before any work: in zoo.load, in every call, and in every CLI command."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import torch
from click.testing import CliRunner

import zoo
from zoo.cli import build_cli
from zoo.options import option, parse_assignments, validate
from zoo.runtime import check_attention


@dataclass(frozen=True)
class Example:
    size: int = option(4, minimum=1)
    rate: float = 1.0
    mode: Literal["a", "b"] = "a"
    names: tuple[str, ...] | None = None
    flag: bool = False


@pytest.mark.parametrize("values, message", [
    ({"sizes": 3}, "unknown option 'sizes'. Valid options: size \\(int\\), rate \\(float\\)"),
    ({"size": "3"}, "size='3' must be int"),
    ({"size": True}, "size=True must be int"),
    ({"size": 0}, "size=0 must be at least 1"),
    ({"rate": float("nan")}, "rate=nan must be float"),
    ({"mode": "c"}, "mode='c' must be one of 'a', 'b'"),
    ({"names": "cat"}, "names='cat' must be a list of str or None"),
    ({"flag": 1}, "flag=1 must be bool"),
])
def test_validate_refuses_with_the_valid_options(values, message):
    with pytest.raises(zoo.BadInput, match=message):
        validate(Example, values, "thing")


def test_validate_converts():
    checked = validate(Example, {"size": 2, "rate": 3, "names": ["x", "y"]}, "thing")
    assert checked == Example(size=2, rate=3.0, names=("x", "y"))
    assert parse_assignments(["size=2", "mode=b", "names=[\"x\"]", "path=a=b"]) == {
        "size": 2, "mode": "b", "names": ["x"], "path": "a=b"}


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size=0"), ({"batch_size": "8"}, "batch_size='8'"), ({"workers": -1}, "workers=-1"),
    ({"device": "tpu"}, "Unknown device 'tpu'"), ({"device": "cuda:99"}, "device='cuda:99' but this machine has"),
    ({"device": "meta"}, "device='meta': zoo runs models on cpu, cuda, mps, xpu"),
    ({"dtype": "int8"}, "Unknown dtype 'int8'"), ({"attention": "fast"}, "attention='fast'"),
    ({"compile": "yes"}, "compile='yes'"), ({"device_map": 3}, "device_map=3"),
    ({"attention_impl": "sdpa"}, "unknown option 'attention_impl'"), ({"weights": 123}, "weights=123"),
    ({"attention": "flash_attention_2"}, "runs on CUDA GPUs, not on cpu: use attention='sdpa'"),
    ({"attention": "eager"}, "vit-cifar runs attention with sdpa, not eager: leave attention out"),
    ({"device_map": "auto"}, "vit-cifar runs on one device: device_map splits transformers models"),
])
def test_load_refuses_bad_runtime_and_model_options(kwargs, message):
    with pytest.raises(zoo.BadInput, match=message):
        zoo.load("vit-cifar", **kwargs)


def test_a_builder_refusing_its_options_is_one_line():
    @zoo.register_model("unannotated", labels=["a", "b"], override=True)
    def build(classes=2):  # no annotation: any value reaches the builder, which refuses it
        return torch.nn.Linear(3, classes)

    with pytest.raises(zoo.BadInput, match=r"unannotated: cannot build .*build from \{'classes': 'x'\} \(.*\)\. "
                                            r"Check the model_args in its zoo.register_model call"):
        zoo.load("unannotated", classes="x")


def test_an_attention_asked_for_is_honoured_or_refused():
    with pytest.raises(zoo.MissingDependency, match=r"'flash_attn': pip install 'zoo\[gpu\]'"):
        check_attention("flash_attention_2", torch.device("cuda"))  # flash-attn is an optional extra

    @zoo.register_model("attention-unknown", labels=["a", "b"], override=True)
    def build():
        return torch.nn.Linear(3, 2)

    with pytest.raises(zoo.BadInput, match="attention-unknown runs attention with its own code, not sdpa"):
        zoo.load("attention-unknown", attention="sdpa")


def test_runtime_options_reach_every_family(samples):
    model = zoo.load("vit-cifar", batch_size=3, workers=1, attention="sdpa", dtype="float32")
    assert (model.batch_size, model.workers) == (3, 1)
    assert len(model.classify([samples / "cat.png"] * 7)) == 7


def test_torch_habits_say_where_a_zoo_model_is_placed():
    model = zoo.load("vit-cifar")
    for habit in ("to", "cuda", "eval", "half"):
        with pytest.raises(AttributeError, match=r"vit-cifar is a zoo model, not a torch module: .*device='cuda'"):
            getattr(model, habit)
    assert not hasattr(model, "stream_text") and hasattr(model, "module")  # any other name is an ordinary miss


@pytest.mark.parametrize("call, message", [
    ({"top_k": 0}, "top_k=0 must be at least 1"), ({"labels": "cat"}, "must be a list of str"),
    ({"labels": []}, "non-empty list"), ({"labels": ["cat", "cat"]}, "distinct"), ({"labels": [" "]}, "non-empty"),
    ({"labels": ["spaceship"]}, "closed-set"), ({"temperature": 1}, "unknown option 'temperature'"),
])
def test_calls_refuse_bad_options_before_any_work(call, message, samples):
    model = zoo.load("vit-cifar")
    with pytest.raises(zoo.BadInput, match=message):
        model.classify_stream(samples / "missing.png", **call)  # refused before the missing file is read


def test_prediction_index_is_the_position_in_the_labels_scored(samples):
    model = zoo.load("vit-cifar")
    own = model.classify(samples / "cat.png", top_k=10)[0]
    assert all(model.labels[p.index] == p.label for p in own)
    subset = ["truck", "cat"]
    assert all(subset[p.index] == p.label for p in model.classify(samples / "cat.png", labels=subset)[0])


S = str(Path(__file__).resolve().parent.parent / "samples" / "cat.png")
BAD_INVOCATIONS = [
    ["list", "--bogus"], ["list", "--task", "nope"],
    ["info", "--bogus", "vit-cifar"], ["info", "no-such-model"],
    ["classify", "vit-cifar", S, "--bogus"], ["classify", "vit-cifar", S, "-o", "bogus=1"],
    ["classify", "vit-cifar", S, "--top-k", "0"], ["classify", "vit-cifar", S, "--labels", ","],
    ["classify", "vit-cifar", S, "--device", "tpu"], ["classify", "vit-cifar", S, "--dtype", "int8"],
    ["classify", "deit-tiny", S, "-o", "num_classes=ten"], ["classify", "vit-cifar", S, "-o", "noequals"],
    ["describe", "qwen2-vl-2b-instruct", S, "--task", "ocr"], ["describe", "florence-2-base", S, "--bogus"],
    ["describe", "florence-2-base", S, "--max-new-tokens", "0"], ["describe", "florence-2-base", S, "--task", "poem"],
    ["embed", "vit-cifar", S, "--out", "x.npy", "-o", "x=1"], ["embed", "vit-cifar", S, "--out", "x.txt"],
    ["detect", "florence-2-base", S, "--task", "nope"], ["detect", "florence-2-base", S, "--bogus"],
    ["plugins", "--bogus"],
    ["eval", "vit-cifar", "--dataset", "cifar10-sample", "-o", "x=1"], ["eval", "vit-cifar", "--limit", "-5"],
    ["bench", "vit-cifar", "--dataset", "cifar10-sample", "--limit", "-5"], ["bench", "vit-cifar", "--bogus"],
    ["bench", "vit-cifar", "--dataset", "cifar10-sample", "--batch-size", "0"],
    ["results", "--last", "-1"], ["results", "--bogus"],
    ["probe", "vit-cifar", "--dataset", "cifar10-sample", "--epochs", "0"], ["probe", "vit-cifar", "--bogus"],
    ["train", "vit-cifar", "--data-root", ".", "--lr", "nan"], ["train", "vit-cifar", "--data-root", ".", "--bogus"],
    ["train", "vit-cifar", "--data-root", ".", "--epochs", "0"],
    ["colours", "--bogus"],
]


@pytest.mark.parametrize("args", BAD_INVOCATIONS, ids=" ".join)
def test_every_command_refuses_bad_options_and_values_without_a_traceback(args, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # relative output names land in the test's own folder
    result = CliRunner().invoke(build_cli(), args)
    assert result.exit_code in (1, 2), result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: ")
