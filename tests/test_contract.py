"""The model contract, checked on every registered loader with tiny weights.

Return types, what Prediction.index means, capabilities matching the methods that work, batched equal
to one-by-one, streams equal to lists, and bad options refused before any work.
"""

import threading
import time

import pytest
import timm
import torch
from safetensors.torch import save_file

import zoo
from zoo.model import CAPABILITIES, PREFETCH_BATCHES
from zoo.registry import registry

TINY_VIT = {"depth": 1, "embed_dim": 32, "num_heads": 2}
VLM_LABELS = ["cat", "dog", "frog"]


def tiny_deit(tmp_path):
    torch.manual_seed(0)
    module = timm.create_model("deit_tiny_patch16_224.fb_in1k", **TINY_VIT)
    save_file(module.state_dict(), str(tmp_path / "deit.safetensors"))
    return zoo.load("deit-tiny", weights=tmp_path / "deit.safetensors", model_args=TINY_VIT, batch_size=2)


def code_model(tmp_path):
    @zoo.register_model("contract-net", labels=["a", "b", "c"], tasks=["classify", "embed"],
                        preprocess={"input_size": 16})
    def build(width: int = 4):
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, width), torch.nn.Linear(width, 3))

    return zoo.load("contract-net", batch_size=2, width=5)


def probe_model(tmp_path):
    from zoo.probe import probe

    result = probe("vit-cifar", dataset="cifar10-sample", epochs=2, batch_size=2)
    return zoo.load(result["name"], batch_size=2)


# One tiny model per loader; a loader without a case here fails test_every_loader_has_a_contract_case.
CASES = {
    "vit_cifar": lambda tmp_path, request: zoo.load("vit-cifar", batch_size=2),
    "timm": lambda tmp_path, request: tiny_deit(tmp_path),
    "florence2": lambda tmp_path, request: zoo.load(
        "florence-2-base", weights=request.getfixturevalue("florence2_tiny"), batch_size=2),
    "qwen2vl": lambda tmp_path, request: zoo.load(
        "qwen2-vl-2b-instruct", weights=request.getfixturevalue("qwen2vl_tiny"), batch_size=2,
        min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16),
    "probe": lambda tmp_path, request: probe_model(tmp_path),
    "example": lambda tmp_path, request: zoo.load("example-colour", batch_size=2),
    "code": lambda tmp_path, request: code_model(tmp_path),
}


def test_every_loader_has_a_contract_case():
    assert set(registry().loaders.values) | {"code"} == set(CASES)


def call_options(model, capability):
    return {"classify": {"top_k": 2, **({"labels": VLM_LABELS} if model.open_vocabulary else {})},
            "embed": {}, "describe": {"max_new_tokens": 3}, "detect": {"max_new_tokens": 8}}[capability]


def check_types(capability, results, model, options):
    if capability == "embed":
        assert isinstance(results, torch.Tensor) and results.ndim >= 2 and results.dtype == torch.float32
        return
    assert isinstance(results, list)
    for result in results:
        if capability == "describe":
            assert isinstance(result, str)
        elif capability == "detect":
            assert all(isinstance(d, zoo.Detection) and len(d.box) == 4 for d in result)
        else:
            scored = options.get("labels") or model.labels
            assert all(isinstance(p, zoo.Prediction) and scored[p.index] == p.label for p in result)
            assert [p.score for p in result] == sorted((p.score for p in result), reverse=True)


def same(capability, a, b):
    if capability == "embed":
        return torch.allclose(torch.stack(list(a)) if isinstance(a, list) else a, b, atol=1e-4)
    if capability == "classify":
        return all([p.label for p in x] == [p.label for p in y] and
                   all(abs(p.score - q.score) < 1e-4 for p, q in zip(x, y)) for x, y in zip(a, b))
    return list(a) == list(b)


@pytest.mark.parametrize("loader", sorted(CASES))
def test_contract(loader, tmp_path, request, samples):
    model = CASES[loader](tmp_path, request)
    inputs = [samples / "cat.png", samples / "dog.png", samples / "frog.png"]
    assert model.record.name == model.name and model.batch_size == 2
    assert model.device.type == "cpu" and model.dtype == torch.float32
    assert model.capabilities and model.capabilities <= set(CAPABILITIES)
    for capability in CAPABILITIES:
        method = getattr(model, capability)
        if capability not in model.capabilities:
            with pytest.raises(zoo.UnsupportedCapability):
                method(inputs)
            continue
        options = call_options(model, capability)
        results = method(inputs, **options)
        check_types(capability, results, model, options)
        one_by_one = [method(item, **options)[0] for item in inputs]
        assert same(capability, one_by_one, results), f"{loader}.{capability}: batch != one by one"
        streamed = list(getattr(model, f"{capability}_stream")(iter(inputs), **options))
        assert same(capability, streamed, results), f"{loader}.{capability}: stream != list"
        with pytest.raises(zoo.BadInput, match="unknown option 'no_such_option'"):
            method(inputs, no_such_option=1, **options)


@pytest.mark.parametrize("loader", sorted(CASES))
def test_bad_load_options_are_refused_before_any_work(loader, tmp_path, request):
    name = {"vit_cifar": "vit-cifar", "timm": "deit-tiny", "florence2": "florence-2-base",
            "qwen2vl": "qwen2-vl-2b-instruct", "example": "example-colour"}.get(loader)
    if name is None:
        pytest.skip("registered at run time by its case")
    with pytest.raises(zoo.BadInput, match="unknown option 'no_such_option'. Valid options:"):
        zoo.load(name, no_such_option=1)
    with pytest.raises(zoo.BadInput, match="batch_size"):
        zoo.load(name, batch_size=0)


def test_code_builder_options_are_its_keyword_arguments(tmp_path):
    model = code_model(tmp_path)
    assert model.module[1].out_features == 5
    with pytest.raises(zoo.BadInput, match=r"option width='wide' must be int"):
        zoo.load("contract-net", width="wide")


@pytest.mark.slow
def test_streaming_memory_is_bounded_by_the_queue(samples):
    """Thousands of inputs: decoded-but-unconsumed inputs never exceed the prefetch bound."""
    import numpy as np

    model = zoo.load("vit-cifar", batch_size=16)
    prepared, lock, prepare = [0], threading.Lock(), model.prepare

    def counting_prepare(item):
        time.sleep(0.0005)  # decoding as slow as a small file's: the threaded, prefetching path
        with lock:
            prepared[0] += 1
        return prepare(item)

    model.prepare = counting_prepare
    images = (np.full((32, 32, 3), i % 255, dtype=np.uint8) for i in range(3000))
    bound = (PREFETCH_BATCHES + 2) * model.batch_size  # the queue, the batch being decoded, the one computing
    worst = 0
    for consumed, row in enumerate(model.embed_stream(images), start=1):
        worst = max(worst, prepared[0] - consumed)
        assert row.shape == (256,)
    assert consumed == 3000 and prepared[0] == 3000
    assert worst <= bound, f"{worst} decoded inputs waited; the bound is {bound}"
    assert worst > model.batch_size  # decoding did run ahead of the model: the queue was in use


def test_a_long_stream_gives_freed_memory_back_once_a_second(monkeypatch):
    """glibc kept freed decoded photos in its heap (resident memory grew 100 MB per 1,000 photos); malloc_trim
    after every batch cost a quarter of the speed of small batches, so it runs at most once a second."""
    import numpy as np

    from zoo import streaming

    trims, clock = [], [1000.0]

    class Libc:
        def malloc_trim(self, pad):
            trims.append(clock[0])

    monkeypatch.setattr(streaming, "_glibc", lambda: Libc())
    monkeypatch.setattr(streaming.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(streaming, "_trimmed", [0.0])
    model = zoo.load("vit-cifar", batch_size=4)
    for i, _ in enumerate(model.embed_stream(np.zeros((32, 32, 3), np.uint8) for _ in range(40))):
        clock[0] += 0.25  # a second for every four inputs (one batch)
    assert 9 <= len(trims) <= 10 and all(b - a >= 1.0 for a, b in zip(trims, trims[1:]))  # ten seconds of work


def test_an_abandoned_stream_stops_decoding(samples):
    model = zoo.load("vit-cifar", batch_size=4)
    stream = model.classify_stream([samples / "cat.png"] * 400)
    assert next(stream)[0].label
    stream.close()  # the prefetch thread is told to stop and joined
    assert not any(t.name == "zoo-prefetch" for t in threading.enumerate())
