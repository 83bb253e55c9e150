"""vit-cifar: the architecture, training (resume, DDP), eval, shipped weights and training outputs."""

import contextlib
import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import zoo
from zoo.cli import build_cli
from zoo.datasets import cifar10_sample
from zoo.evaluate import accuracy
from zoo.labels import CIFAR10
from zoo_vit_cifar.train import train
from zoo_vit_cifar.vit import ViT

SMALL = dict(epochs=2, batch_size=20, test_limit=40)


def run_cli(*args):
    return CliRunner().invoke(build_cli(), [str(a) for a in args], catch_exceptions=False)


def test_vit_shapes_and_options():
    x = torch.randn(2, 3, 32, 32)
    for options in ({"pool": "cls"}, {"pool": "mean", "drop_path": 0.1}, {"image_size": 64, "patch_size": 8}):
        vit = ViT(**{"image_size": 32, **options}, num_classes=7, dim=32, depth=2, heads=2, dim_head=16).eval()
        image = torch.randn(2, 3, options.get("image_size", 32), options.get("image_size", 32))
        assert vit(image).shape == (2, 7)
        tokens = vit.forward_features(image)
        assert tokens.shape[1] == (options.get("image_size", 32) // options.get("patch_size", 4)) ** 2 + 1
    with pytest.raises(AssertionError):
        ViT(image_size=30, patch_size=4)
    assert ViT(dim=32, depth=1, heads=2, dim_head=16).eval()(x).shape == (2, 10)


def test_batched_crop_and_flip_equal_torchvisions_per_image_transforms():
    from torchvision.transforms.v2 import functional as TF

    from zoo_vit_cifar.augment import CROP_PADDING, random_crop, random_flip

    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    crops = random_crop(images, torch.Generator().manual_seed(1))
    draws = torch.Generator().manual_seed(1)  # the same offsets, drawn again: rows first, then columns
    tops, lefts = (torch.randint(0, 2 * CROP_PADDING + 1, (16,), generator=draws) for _ in range(2))
    for image, crop, top, left in zip(images, crops, tops.tolist(), lefts.tolist()):
        padded = TF.pad(image, [CROP_PADDING], padding_mode="reflect")
        assert torch.equal(crop, TF.crop(padded, top, left, 32, 32))
    assert len(set(zip(tops.tolist(), lefts.tolist()))) > 8  # the offsets vary from image to image
    flipped = random_flip(images, torch.Generator().manual_seed(2))
    which = torch.rand(16, generator=torch.Generator().manual_seed(2)) < 0.5
    for image, out, flip in zip(images, flipped, which.tolist()):
        assert torch.equal(out, TF.horizontal_flip(image) if flip else image)
    assert 0 < which.sum() < 16


@pytest.mark.parametrize("negative", [False, True])
def test_batched_rand_augment_applies_torchvisions_op_to_each_image(negative):
    """Every (op, sign) of torchvision's RandAugment, forced on a whole batch, against torchvision's own op applied
    image by image: geometric and lookup ops exactly, blends within one grey level (another rounding order)."""
    from torchvision.transforms.v2 import InterpolationMode, RandAugment

    from zoo_vit_cifar.augment import BLENDS, OPS, magnitude, rand_augment_layer, tables

    reference = RandAugment()
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    images[0] = images[0] // 4 + 64  # a low-contrast image, for AutoContrast and Equalize
    images[1, 0] = 7  # a one-level channel, which AutoContrast leaves as it is
    shared = tables(32, 32, images.device)
    for index, name in enumerate(OPS):
        op, sign = torch.full((6,), index), torch.full((6,), negative)
        ours = rand_augment_layer(images, op, sign, shared)
        m = magnitude(name, 32, 32) * (-1 if negative and RandAugment._AUGMENTATION_SPACE[name][1] else 1)
        theirs = torch.stack([reference._apply_image_or_video_transform(
            image, name, m, interpolation=InterpolationMode.NEAREST, fill={}) for image in images])
        difference = (ours.int() - theirs.int()).abs()
        if name in BLENDS:
            assert difference.max() <= 1 and (difference == 0).float().mean() > 0.95, name
        else:
            assert torch.equal(ours, theirs), name


def test_rand_augment_draws_each_images_ops_on_the_device():
    from zoo_vit_cifar.augment import rand_augment

    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    first = rand_augment(images, 2, torch.Generator().manual_seed(5))
    assert torch.equal(first, rand_augment(images, 2, torch.Generator().manual_seed(5)))  # a resume is exact
    changed = (first != images).flatten(1).any(dim=1)
    assert 0.5 < changed.float().mean() < 1  # most images change; some drew Identity twice or a no-op


def test_augmentation_never_waits_for_the_gpu():
    """No operator reads the batch's values on the host (an item, a nonzero, a boolean-mask index): on a GPU each
    one waits for the queue, so the host cannot run ahead. Run on the meta device, with such reads recorded.
    (torchvision's autocontrast assigns through a boolean mask, which waits up to torch 2.14, so zoo has its own.)"""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    from zoo_vit_cifar.augment import rand_augment, random_crop, random_flip

    class HostReads(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.found = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            tensors = [t for t in tree_leaves((args, kwargs or {})) if isinstance(t, torch.Tensor)]
            name = func.__name__.split(".")[0]
            masks = name.startswith("index") and any(t.dtype == torch.bool for t in tensors[1:])
            if any(t.is_meta for t in tensors) and (masks or name in ("nonzero", "_local_scalar_dense", "masked_select")):
                self.found.append(name)
            return func(*args, **(kwargs or {}))

    images = torch.empty((8, 3, 32, 32), dtype=torch.uint8, device="meta")
    with HostReads() as reads:
        rand_augment(random_flip(random_crop(images, None), None), 2, None)
    assert reads.found == []
    with HostReads() as reads, contextlib.suppress(Exception):  # the meta device cannot size the result
        images[images > 128]  # a boolean-mask read: the check sees it
    assert reads.found


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixup_and_cutmix_weigh_each_target_by_its_share_of_the_image(kind):
    import numpy as np

    from zoo_vit_cifar.presets import PRESETS
    from zoo_vit_cifar.augment import mix

    recipe = replace(PRESETS["best"], mixup=0.8 if kind == "mixup" else 0.0, cutmix=1.0 if kind == "cutmix" else 0.0)
    x = torch.arange(8.0)[:, None, None, None].expand(8, 3, 32, 32)  # image i is all i: its pixels say whose they are
    y = torch.eye(10)[:8]
    for seed in range(20):
        mixed, targets = mix(x, y, recipe, np.random.default_rng(seed))
        assert torch.allclose(targets.sum(dim=1), torch.ones(8))
        own, partner = targets[torch.arange(8), torch.arange(8)], targets[torch.arange(8), torch.arange(7, -1, -1)]
        if kind == "cutmix":  # the partner is the batch reversed; the box's area is its share
            share = (mixed == x.flip(0)).float().mean(dim=(1, 2, 3))
            assert torch.allclose(partner, share) and torch.allclose(own, 1 - share)
        else:
            assert torch.allclose(mixed, own[:, None, None, None] * x + partner[:, None, None, None] * x.flip(0))


def test_learning_rate_warms_up_then_follows_a_cosine_to_zero():
    from zoo_vit_cifar.presets import PRESETS
    from zoo_vit_cifar.train import lr_at

    recipe, per_epoch = PRESETS["best"], 97
    total, warmup = recipe.epochs * per_epoch, recipe.warmup_epochs * per_epoch
    rates = [lr_at(step, total, recipe, per_epoch) for step in range(total)]
    assert rates[0] == pytest.approx(recipe.lr / warmup) and rates[warmup - 1] == pytest.approx(recipe.lr)
    assert all(a < b for a, b in zip(rates[:warmup], rates[1:warmup]))
    assert all(a >= b for a, b in zip(rates[warmup:], rates[warmup + 1:])) and rates[-1] < recipe.lr * 1e-3


def test_shipped_weights_load_offline_and_classify(samples):
    model = zoo.load("vit-cifar")
    assert model.labels == CIFAR10 and model.capabilities == {"classify", "embed"}
    predictions = model.classify(samples / "cat.png", top_k=3)[0]
    assert len(predictions) == 3 and predictions[0].score >= predictions[1].score
    assert all(p.label in CIFAR10 for p in predictions)
    assert abs(sum(p.score for p in model.classify(samples / "cat.png", top_k=10)[0]) - 1) < 1e-4
    assert model.embed([samples / "cat.png", samples / "dog.png"]).shape[0] == 2


def test_shipped_weights_accuracy_matches_the_record():
    """The bundled sample is real CIFAR-10 test data: the shipped model should classify most of it."""
    data = cifar10_sample(split="all")
    result = accuracy(zoo.load("vit-cifar"), data)
    shipped = json.loads((zoo.weights.resolve(zoo.info("vit-cifar")) / "metrics.json").read_text())
    assert zoo.info("vit-cifar").metrics["cifar10_top1"] == pytest.approx(shipped["test_top1"])
    assert result["top1"] > 0.6 and result["top1"] == pytest.approx(shipped["test_top1"], abs=0.12)


@pytest.mark.slow
def test_train_writes_a_loadable_run_deterministically(cifar_root, tmp_path, samples):
    a = train("cpu", data_root=cifar_root, out=tmp_path / "a", seed=3, progress=False, **SMALL)
    b = train("cpu", data_root=cifar_root, out=tmp_path / "b", seed=3, progress=False, **SMALL)
    assert [e["train_loss"] for e in a["epochs"]] == [e["train_loss"] for e in b["epochs"]]
    for name in ("model.safetensors", "config.json", "metrics.json", "checkpoint.safetensors", "curve.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2] and 0 <= metrics["test_top1"] <= 1
    model = zoo.load("vit-cifar", weights=tmp_path / "a")
    assert model.module.blocks.__len__() == 4  # the run's config.json, not the record's model_args
    assert model.classify(samples / "cat.png", top_k=1)[0][0].label in CIFAR10


@pytest.mark.slow
def test_interrupt_then_resume_is_exact(cifar_root, tmp_path, monkeypatch):
    full = train("cpu", data_root=cifar_root, out=tmp_path / "full", seed=1, progress=False, **SMALL)
    real_step, calls = torch.optim.AdamW.step, {"n": 0}

    def interrupt_on_seventh(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # mid-way through the second epoch (5 steps an epoch)
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", interrupt_on_seventh)
    with pytest.raises(KeyboardInterrupt):
        train("cpu", data_root=cifar_root, out=tmp_path / "cut", seed=1, progress=False, **SMALL)
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    resumed = train("cpu", data_root=cifar_root, out=tmp_path / "cut", seed=1, resume=True, progress=False, **SMALL)
    assert [e["train_loss"] for e in resumed["epochs"]] == [e["train_loss"] for e in full["epochs"]]
    wf, wr = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "cut" / "model.safetensors")
    assert all(torch.equal(wf[k], wr[k]) for k in wf)


def test_resume_refuses_other_settings_and_missing_checkpoints(cifar_root, tmp_path):
    with pytest.raises(zoo.ZooError, match="no checkpoint"):
        train("cpu", data_root=cifar_root, out=tmp_path / "none", resume=True, progress=False, **SMALL)
    train("cpu", data_root=cifar_root, out=tmp_path / "r", seed=0, progress=False, epochs=1, batch_size=20, test_limit=20)
    with pytest.raises(zoo.ZooError, match="other settings"):
        train("cpu", data_root=cifar_root, out=tmp_path / "r", seed=0, resume=True, progress=False, epochs=1,
              batch_size=10, test_limit=20)


def test_missing_cifar_offline_names_the_folder(tmp_path):
    with pytest.raises(zoo.ZooError, match=str(tmp_path / "cifar-10-batches-py")):
        train("cpu", data_root=tmp_path, out=tmp_path / "o", progress=False)


def test_cli_train_register_and_eval(cifar_root, tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", "vit-cifar", "--data-root", cifar_root, "--out", out, "--epochs", 1, "--batch-size", 20,
                     "--test-limit", 20, "--register", "my-vit")
    assert result.exit_code == 0, result.output
    assert "Registered 'my-vit'" in result.output
    assert "epoch 1/1: loss" in result.output and "it/s" not in result.stderr  # no bar redraws in a log
    assert zoo.info("my-vit").weights.path == str(out.resolve())
    result = run_cli("eval", "my-vit", "--dataset", "cifar10", "--data-root", cifar_root)
    assert result.exit_code == 0
    from zoo.datasets import get_dataset

    expected = accuracy(zoo.load("my-vit"), get_dataset("cifar10", cifar_root))
    assert f"top-1 {expected['top1']:.4f}, top-5 {expected['top5']:.4f}" in result.output


@pytest.mark.slow
def test_ddp_gloo_two_processes(cifar_root, tmp_path, subprocess_env):
    out = tmp_path / "ddp"
    env = {**subprocess_env, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "zoo", "train", "vit-cifar", "--data-root", str(cifar_root), "--out", str(out), "--epochs", "1",
               "--batch-size", "20", "--test-limit", "20", "--device", "cpu"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and len(metrics["epochs"]) == 1
    assert zoo.load("vit-cifar", weights=out).classify(cifar10_sample().items[:2], top_k=1)
