"""Linear probes and k-NN on frozen embeddings: how a backbone without a head learns a dataset."""

import hashlib
import json
from pathlib import Path

from .datasets import get_dataset
from .errors import ZooError
from .files import atomic_path, write_text
from .hookspecs import hookimpl
from .model import Model
from .weights import home

PLUGIN = "probe"


def cached_features(model, data, *, batch_size=64, progress=False):
    """Embeddings of every item, cached under $ZOO_HOME/features keyed by model, weights and data."""
    import torch
    from safetensors.torch import load_file, save_file
    from tqdm import tqdm

    key = json.dumps([model.name, str(getattr(model, "weights_path", "")), data.name, data.split, len(data),
                      data.targets[:50], str(data.items[0])[:200] if isinstance(data.items[0], Path) else ""])
    path = home() / "features" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.safetensors"
    if path.exists():
        return load_file(path)["features"]
    rows = []
    with tqdm(total=len(data), desc=f"{model.name} features ({data.split})", disable=not progress, leave=False) as bar:
        for start in range(0, len(data), batch_size):
            rows.append(model.embed(data.items[start:start + batch_size]))
            bar.update(len(rows[-1]))
    features = torch.cat(rows).float()
    with atomic_path(path) as tmp:
        save_file({"features": features.contiguous()}, str(tmp))
    return features


def train_linear(features, targets, num_classes, *, epochs=100, lr=1e-2, weight_decay=1e-4, seed=0):
    """A softmax classifier on standardised features (AdamW, cosine schedule, mini-batches of 256)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    x, y = (features - mean) / std, torch.as_tensor(targets)
    head = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(head.weight), torch.nn.init.zeros_(head.bias)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * max(1, (len(x) + 255) // 256)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=gen).split(256):
            loss = torch.nn.functional.cross_entropy(head(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return {"weight": head.weight.detach(), "bias": head.bias.detach(), "mean": mean, "std": std}


def linear_logits(head, features):
    return ((features - head["mean"]) / head["std"]) @ head["weight"].T + head["bias"]


def knn_predict(train_features, train_targets, features, num_classes, *, k=20, temperature=0.07):
    """Class scores from the k nearest training embeddings (cosine), weighted as in DINO."""
    import torch

    train = torch.nn.functional.normalize(train_features, dim=1)
    query = torch.nn.functional.normalize(features, dim=1)
    k = min(k, len(train))
    similarity, index = (query @ train.T).topk(k, dim=1)
    votes = torch.zeros(len(query), num_classes)
    labels = torch.as_tensor(train_targets)[index]
    votes.scatter_add_(1, labels, (similarity / temperature).exp())
    return votes


def top1(scores, targets):
    import torch

    return (scores.argmax(1) == torch.as_tensor(targets)).float().mean().item()


def probe(backbone, *, dataset="cifar10", data_root=None, name=None, limit=None, test_limit=None,
          batch_size=64, epochs=100, device=None, dtype=None, progress=False, register=True):
    """Train a linear probe (and measure k-NN) on a backbone's frozen features; save it as a model."""
    from safetensors.torch import save_file

    from . import api
    from .registry import save_user_record

    model = backbone if isinstance(backbone, Model) else api.load(backbone, device=device, dtype=dtype)
    if not model.supports("embed"):
        raise model.unsupported("embed", "A probe needs embeddings.")
    train = get_dataset(dataset, data_root, "train").subset(limit)
    test = get_dataset(dataset, data_root, "test").subset(test_limit)
    train_f = cached_features(model, train, batch_size=batch_size, progress=progress)
    test_f = cached_features(model, test, batch_size=batch_size, progress=progress)
    head = train_linear(train_f, train.targets, len(train.classes), epochs=epochs)
    linear = top1(linear_logits(head, test_f), test.targets)
    knn = top1(knn_predict(train_f, train.targets, test_f, len(train.classes)), test.targets)

    name = name or f"{model.name}+{train.name}"
    folder = home() / "probes" / name.replace("/", "_")
    with atomic_path(folder / "head.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in head.items()}, str(tmp))
    result = {"backbone": model.name, "dataset": train.name, "train_images": len(train), "test_images": len(test),
              "linear_top1": linear, "knn_top1": knn}
    write_text(folder / "config.json", json.dumps({**result, "labels": list(train.classes)}, indent=2))
    if register:
        save_user_record({
            "name": name, "plugin": PLUGIN, "architecture": "linear-probe", "model_args": {"backbone": model.name},
            "weights": {"path": str(folder)}, "labels": list(train.classes), "tasks": ["classify", "embed"],
            "metrics": {f"{train.name}_linear_top1": linear, f"{train.name}_knn_top1": knn},
            "description": f"Linear probe on frozen {model.name} features, trained with 'zoo probe'",
        })
    return {**result, "name": name, "path": str(folder)}


class ProbeModel(Model):
    """A backbone's embeddings followed by a trained linear head."""

    capabilities = frozenset({"classify", "embed"})

    def __init__(self, record, backbone, head, labels):
        super().__init__(record)
        self.backbone, self.head, self.labels = backbone, head, tuple(labels)

    def param_count(self):
        return self.backbone.param_count() + self.head["weight"].numel() + self.head["bias"].numel()

    def embed(self, images, **options):
        return self.backbone.embed(images, **options)

    def classify(self, images, *, top_k=5, labels=None):
        import torch

        from .model import Prediction

        probs = torch.softmax(linear_logits(self.head, self.embed(images)), dim=-1)
        if labels is not None:
            missing = [label for label in labels if label not in self.labels]
            if missing:
                raise ZooError(f"{self.name} was probed on {len(self.labels)} labels; {missing[0]!r} is not one.")
            keep = [self.labels.index(label) for label in labels]
            probs = probs[:, keep] / probs[:, keep].sum(1, keepdim=True)
        else:
            keep = list(range(len(self.labels)))
        scores, picks = probs.topk(min(top_k, probs.shape[1]), dim=1)
        return [[Prediction(self.labels[keep[i]], keep[i], s) for i, s in zip(p, sc)]
                for p, sc in zip(picks.tolist(), scores.tolist())]


def load(record, weights, *, device=None, dtype=None, **overrides):
    from safetensors.torch import load_file

    from . import api

    if weights is None:
        raise ZooError(f"Probe {record.name!r} has no weights path; re-run 'zoo probe'.")
    config = json.loads((Path(weights) / "config.json").read_text())
    backbone = api.load(record.model_args["backbone"], device=device, dtype=dtype, **overrides)
    return ProbeModel(record, backbone, load_file(Path(weights) / "head.safetensors"), config["labels"])


@hookimpl
def register_loaders(register):
    register(PLUGIN, load)


@hookimpl
def register_commands(cli):
    import click

    @cli.command(name="probe")
    @click.argument("backbone")
    @click.option("--dataset", default="cifar10", show_default=True)
    @click.option("--data-root", type=click.Path(), default=None)
    @click.option("--name", default=None, help="Name of the new model [BACKBONE+DATASET].")
    @click.option("--limit", type=int, default=None, help="A seeded subset of N training images.")
    @click.option("--test-limit", type=int, default=None, help="A seeded subset of N test images.")
    @click.option("--batch-size", type=int, default=64, show_default=True)
    @click.option("--epochs", type=int, default=100, show_default=True)
    @click.option("--device", default=None)
    @click.option("--dtype", default=None)
    def probe_command(backbone, dataset, data_root, name, limit, test_limit, batch_size, epochs, device, dtype):
        """Train a linear probe on BACKBONE's frozen features; saves it as a new model."""
        r = probe(backbone, dataset=dataset, data_root=data_root, name=name, limit=limit, test_limit=test_limit,
                  batch_size=batch_size, epochs=epochs, device=device, dtype=dtype, progress=True)
        click.echo(f"{r['name']}: linear top-1 {r['linear_top1']:.4f}, k-NN top-1 {r['knn_top1']:.4f} "
                   f"({r['train_images']} train / {r['test_images']} test images). Saved to {r['path']}")
