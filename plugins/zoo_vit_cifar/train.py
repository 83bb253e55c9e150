"""Train the ViT on CIFAR-10: tensors on the device, no per-image DataLoader, exact resume, DDP."""

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.profiler import record_function

from zoo.datasets import cifar_batches
from zoo.errors import ZooError
from zoo.files import atomic_path, write_text
from zoo.labels import CIFAR10

from .augment import mix, rand_augment, random_crop, random_flip
from .presets import PRESETS, Recipe
from .vit import ViT

CHECKPOINT = "checkpoint.safetensors"
SEED_RANGE = 2**62  # per-step seeds are drawn below this
EPOCH_SEED_STRIDE = 100_003  # a prime: the shuffle seeds of (seed, epoch) pairs never collide in practice
SHOW_EVERY = 20  # steps between the progress bar's loss readings (each one waits for the GPU)
EVAL_BATCH = 1000

# -- distributed -------------------------------------------------------------------------------


def setup_distributed(device):
    """(rank, world, device) from torchrun's environment; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device or "cuda").startswith("cuda")
    dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
    return rank, world, torch.device(f"cuda:{local}" if use_cuda else "cpu")


# -- checkpoints ---------------------------------------------------------------------------------


def unwrap(model):
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile


def save_checkpoint(path, model, optimizer, state):
    """Model, optimizer and loop position in one safetensors file, written atomically."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    opt = optimizer.state_dict()
    for index, values in opt["state"].items():
        for key, value in values.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).cpu().contiguous()
    meta = {"state": json.dumps(state), "param_groups": json.dumps(opt["param_groups"])}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_checkpoint(path, model, optimizer):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    unwrap(model).load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    opt_state = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            opt_state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": opt_state, "param_groups": json.loads(meta["param_groups"])})
    return json.loads(meta["state"])


def save_model(out, model, recipe, history, preset):
    """The loadable result: model.safetensors + config.json (architecture, labels, preprocessing)."""
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(state, str(tmp))
    config = {
        "architecture": "vit",
        "model_args": {"image_size": 32, "num_classes": 10, **recipe.model},
        "labels": list(CIFAR10),
        "preprocess": {"input_size": [3, 32, 32], "mean": list(recipe.mean), "std": list(recipe.std),
                       "interpolation": "bicubic", "crop_pct": 1.0},
        "preset": preset,
        "test_top1": history[-1]["test_top1"] if history else None,
    }
    write_text(out / "config.json", json.dumps(config, indent=2))


# -- the loop ------------------------------------------------------------------------------------


def lr_at(step, total, recipe, steps_per_epoch):
    warmup = recipe.warmup_epochs * steps_per_epoch
    if step < warmup:
        return recipe.lr * (step + 1) / warmup
    if recipe.schedule == "constant":
        return recipe.lr
    progress = (step - warmup) / max(1, total - warmup)
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model, recipe):
    if recipe.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    # No weight decay on norms, biases, the CLS token and position embeddings.
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos_embedding" not in n and "cls_token" not in n]
    no_decay = [p for n, p in model.named_parameters() if not any(p is q for q in decay)]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel for the whole update on CUDA, where the per-tensor loop of launches costs more than the maths.
    return torch.optim.AdamW(groups, lr=recipe.lr, fused=next(model.parameters()).is_cuda)


@torch.inference_mode()
def evaluate(model, images, labels, mean, std, autocast, batch_size=EVAL_BATCH):
    """(top-1, top-5) accuracy of a model on uint8 NCHW images."""
    model.eval()
    top1 = top5 = 0
    for start in range(0, len(images), batch_size):
        x = (images[start:start + batch_size].float() / 255 - mean) / std
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(x).float()
        y = labels[start:start + batch_size]
        best = logits.topk(5, dim=1).indices
        top1 += (best[:, 0] == y).sum().item()
        top5 += (best == y[:, None]).any(dim=1).sum().item()
    return top1 / len(images), top5 / len(images)


def load_cifar(data_root, device, limit=None, test_limit=None):
    def tensors(split, n):
        images, labels = cifar_batches(data_root, split)
        images, labels = images[:n], labels[:n]
        return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device), torch.tensor(labels, device=device)

    return tensors("train", limit), tensors("test", test_limit)


@dataclass
class Run:
    """One training run: its settings, data, network and optimiser, and where the loop stands (`state`)."""

    recipe: Recipe
    out: Path
    seed: int
    rank: int
    world: int
    device: torch.device
    data: tuple  # (train images, train labels, test images, test labels) as tensors on the device
    model: torch.nn.Module
    net: torch.nn.Module  # the model as trained: DDP and/or compiled
    optimizer: torch.optim.Optimizer
    state: dict  # epoch, step, history, elapsed, epoch_losses, ...: everything a resume needs
    progress: bool

    @property
    def main(self):
        return self.rank == 0

    @property
    def autocast(self):
        return self.device.type == "cuda" and self.recipe.bf16

    @property
    def steps_per_epoch(self):
        return len(self.data[0]) // self.recipe.batch_size

    @property
    def normalisation(self):
        shape = (1, 3, 1, 1)
        return (torch.tensor(self.recipe.mean, device=self.device).view(shape),
                torch.tensor(self.recipe.std, device=self.device).view(shape))


def make_recipe(preset, overrides):
    if preset not in PRESETS:
        raise ZooError(f"Unknown preset {preset!r}; presets: {', '.join(PRESETS)}.")
    return replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})


def start(preset, *, data_root, out, seed, resume, device, limit, test_limit, progress, overrides):
    """A Run ready for its first (or resumed) step."""
    recipe = make_recipe(preset, overrides)
    rank, world, device = setup_distributed(device)
    if recipe.batch_size % world:
        raise ZooError(f"--batch-size {recipe.batch_size} must divide evenly over {world} processes.")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    (train_x, train_y), (test_x, test_y) = load_cifar(data_root, device, limit, test_limit)
    if len(train_x) < recipe.batch_size:
        raise ZooError(f"{len(train_x)} training images are fewer than one batch of {recipe.batch_size}.")
    torch.manual_seed(seed)
    model = ViT(image_size=32, num_classes=len(CIFAR10), **recipe.model).to(device)
    optimizer = make_optimizer(model, recipe)
    state = {"epoch": 0, "step": 0, "history": [], "elapsed": 0.0, "seed": seed, "preset": preset,
             "recipe": json.loads(json.dumps(asdict(recipe)))}
    if resume:
        state = resume_state(Path(out) / CHECKPOINT, model, optimizer, state)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    net = torch.compile(net) if recipe.compile else net
    return Run(recipe, Path(out), seed, rank, world, device, (train_x, train_y, test_x, test_y), model, net, optimizer,
               state, progress)


def resume_state(checkpoint, model, optimizer, fresh):
    if not checkpoint.exists():
        raise ZooError(f"--resume: no checkpoint at {checkpoint}; start without --resume.")
    try:
        state = load_checkpoint(checkpoint, model, optimizer)
    except Exception as e:  # truncated, tampered or foreign: safetensors, json and torch each fail their own way
        reason = " ".join(str(e).split())[:160]
        raise ZooError(f"--resume: {checkpoint} is damaged ({type(e).__name__}: {reason}). Start again with "
                       "--force, or restore the file.") from None
    if state["recipe"] != fresh["recipe"] or state["seed"] != fresh["seed"]:
        raise ZooError(f"--resume: {checkpoint} was made with other settings; pass the same preset, options and seed.")
    return state


def augment(run, x, y, rng, gen):
    """Batched augmentation of uint8 images on the device; returns normalised images and soft targets."""
    recipe, (mean, std) = run.recipe, run.normalisation
    if recipe.crop:
        x = random_crop(x, gen)
    if recipe.flip:
        x = random_flip(x, gen)
    if recipe.randaugment:
        x = rand_augment(x, recipe.randaugment, gen)
    x = (x.float() / 255 - mean) / std
    classes = len(CIFAR10)
    y_soft = F.one_hot(y, classes).float() * (1 - recipe.label_smoothing) + recipe.label_smoothing / classes
    return mix(x, y_soft, recipe, rng)


def train_step(run, epoch, step, order):
    """One optimiser step; every random draw derives from (seed, epoch, step, rank), so a resume is exact."""
    recipe, (train_x, train_y) = run.recipe, run.data[:2]
    rng = np.random.default_rng([run.seed, epoch, step, run.rank])
    # On the device: random draws made on the CPU would be copied over, and each copy waits for the GPU's queue.
    gen = torch.Generator(device=run.device).manual_seed(int(rng.integers(SEED_RANGE)))
    torch.manual_seed(int(rng.integers(SEED_RANGE)))  # dropout, stochastic depth
    index = order[step * recipe.batch_size:(step + 1) * recipe.batch_size][run.rank::run.world]
    # Named for benchmarks/vit_cifar.py --profile; outside a profiler each costs about 7 µs (2-core CPU), once a step.
    with record_function("augment"):
        x, y_soft = augment(run, train_x[index], train_y[index], rng, gen)
    total = run.steps_per_epoch * recipe.epochs
    for group in run.optimizer.param_groups:
        group["lr"] = lr_at(epoch * run.steps_per_epoch + step, total, recipe, run.steps_per_epoch)
    with record_function("forward"), torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.autocast):
        loss = torch.sum(-y_soft * F.log_softmax(run.net(x).float(), dim=-1), dim=-1).mean()
    run.optimizer.zero_grad(set_to_none=True)
    with record_function("backward"):
        loss.backward()
    with record_function("optimizer"):
        run.optimizer.step()
    return loss


def train_epoch(run, epoch):
    """The rest of one epoch from state['step']; the seconds it took are added to state['elapsed']."""
    state = run.state
    shuffle = torch.Generator().manual_seed(run.seed * EPOCH_SEED_STRIDE + epoch)  # the same order on every process
    order = torch.randperm(len(run.data[0]), generator=shuffle).to(run.device)
    bar = _progress(run.steps_per_epoch, state["step"], epoch, run.recipe.epochs, run.progress and run.main)
    # Kept in the checkpoint, so a resumed epoch's mean is exact; tensors until the epoch ends, since reading a
    # loss waits for the GPU to finish its queue (the bar reads one every SHOW_EVERY steps).
    losses = state.setdefault("epoch_losses", [])
    run.net.train()
    started, seen = time.perf_counter(), 0
    try:
        for step in range(state["step"], run.steps_per_epoch):
            losses.append(train_step(run, epoch, step, order).detach())
            state["step"] = step + 1
            seen += run.recipe.batch_size
            bar.update(1)
            if step % SHOW_EVERY == 0 and not bar.disable:  # reading a loss waits for the GPU
                bar.set_postfix(loss=f"{float(losses[-1]):.3f}", img_s=f"{seen / (time.perf_counter() - started):.0f}")
    finally:
        state["epoch_losses"] = [float(loss) for loss in losses]  # numbers for the checkpoint; the GPU is done now
        state["elapsed"] += time.perf_counter() - started
        bar.close()


def end_epoch(run, epoch):
    """Evaluate, record the epoch, and (on the main process) save the checkpoint, model and metrics."""
    state, (test_x, test_y) = run.state, run.data[2:]
    top1, top5 = evaluate(unwrap(run.net), test_x, test_y, *run.normalisation, run.autocast)
    losses = state["epoch_losses"]
    state["history"].append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None,
                             "test_top1": top1, "test_top5": top5, "elapsed_s": round(state["elapsed"], 2)})
    state["epoch"], state["step"], state["epoch_losses"] = epoch + 1, 0, []
    if not run.main:
        return
    save_checkpoint(run.out / CHECKPOINT, run.model, run.optimizer, state)
    save_model(run.out, run.model, run.recipe, state["history"], state["preset"])
    _write_metrics(run.out, state, run.world, run.device)
    if run.progress:
        print(f"epoch {epoch + 1}/{run.recipe.epochs}: loss {state['history'][-1]['train_loss']:.4f}, "
              f"test top-1 {top1:.4f}, {state['elapsed']:.0f} s", flush=True)


def train(preset="cpu", *, data_root, out, seed=0, resume=False, device=None, limit=None, test_limit=None,
          progress=True, **overrides):
    """Train a preset (overrides: epochs, batch_size, lr, ...); returns the metrics dict (None off rank 0)."""
    run = start(preset, data_root=data_root, out=out, seed=seed, resume=resume, device=device, limit=limit,
                test_limit=test_limit, progress=progress, overrides=overrides)
    run.out.mkdir(parents=True, exist_ok=True)
    try:
        while run.state["epoch"] < run.recipe.epochs:
            epoch = run.state["epoch"]
            train_epoch(run, epoch)
            end_epoch(run, epoch)
    except KeyboardInterrupt:
        if run.main:
            save_checkpoint(run.out / CHECKPOINT, run.model, run.optimizer, run.state)
            print(f"\nInterrupted: resumable checkpoint in {run.out / CHECKPOINT} (epoch {run.state['epoch']}, "
                  f"step {run.state['step']}). Continue with --resume.", flush=True)
        raise
    finally:
        if run.world > 1:
            dist.destroy_process_group()
    if not run.main:
        return None
    _plot(run.out, run.state["history"])
    return _metrics(run.state, run.world, run.device)


def _progress(total, initial, epoch, epochs, enabled):
    """A bar in a terminal only: in a log (a GPU job's output, nohup), each redraw is noise; the epoch lines stay."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{epochs}",
                disable=not (enabled and sys.stderr.isatty()), leave=False)


def _metrics(state, world, device):
    last = state["history"][-1] if state["history"] else {}
    return {"preset": state["preset"], "seed": state["seed"], "recipe": state["recipe"], "epochs": state["history"],
            "test_top1": last.get("test_top1"), "test_top5": last.get("test_top5"),
            "train_time_s": round(state["elapsed"], 2), "processes": world, "device": str(device),
            "torch": torch.__version__}


def _write_metrics(out, state, world, device):
    write_text(out / "metrics.json", json.dumps(_metrics(state, world, device), indent=2))


def _plot(out, history):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no training-curve PNG (pip install 'zoo[plot]').")
        return
    epochs = [h["epoch"] for h in history]
    fig, loss_ax = plt.subplots(figsize=(6, 4))
    loss_ax.plot(epochs, [h["train_loss"] for h in history], color="tab:blue", marker="o")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("train loss", color="tab:blue")
    acc_ax = loss_ax.twinx()
    acc_ax.plot(epochs, [h["test_top1"] for h in history], color="tab:red", marker="s")
    acc_ax.set_ylabel("test top-1", color="tab:red")
    fig.tight_layout()
    with atomic_path(out / "curve.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
