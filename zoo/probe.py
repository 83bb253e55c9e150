"""Linear probes and k-NN on frozen embeddings: how a backbone without a head learns a dataset."""

import hashlib
import json
import re
from pathlib import Path

from .config import home
from .datasets import get_dataset
from .files import atomic_path, read_json_object, write_text
from .hookspecs import hookimpl
from .errors import ZooError
from .model import Model
from .vision import EmbedOptions

PLUGIN = "probe"


def fingerprint(model):
    """What the model's features depend on: its weights' content hash, else its parameters' bytes."""
    import torch

    from .weights import content_hash

    if model.weights_path is not None:
        return content_hash(model.weights_path)
    digest = hashlib.sha256(model.name.encode())
    network = getattr(model, "module", None) or getattr(model, "backbone", None)
    for tensor in (network.state_dict().values() if hasattr(network, "state_dict") else []):
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cached_features(model, data, *, progress=False):
    """Embeddings of every item, cached under $ZOO_HOME/features keyed by weights content and data."""
    import torch
    from safetensors.torch import load_file, save_file

    key = json.dumps([model.name, fingerprint(model), data.name, data.split, len(data), data.targets[:50],
                      str(data.items[0])[:200] if isinstance(data.items[0], Path) else ""])
    path = home() / "features" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.safetensors"
    if path.exists():
        return load_file(path)["features"]
    features = torch.stack(list(model.embed_stream(data.items, progress=progress))).float()
    with atomic_path(path) as tmp:
        save_file({"features": features.contiguous()}, str(tmp))
    return features


def check_name(name):
    """A probe's name becomes a folder under $ZOO_HOME/probes: plain characters only, nothing like '..'."""
    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}", name):
        raise ZooError(f"--name {name!r}: use letters, digits and . _ + - (not starting with . or -).")
    return name


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


KNN_CHUNK = 256  # queries compared with every training embedding at once


def knn_predict(train_features, train_targets, features, num_classes, *, k=20, temperature=0.07):
    """Class scores from the k nearest training embeddings (cosine), weighted as in DINO."""
    import torch

    train = torch.nn.functional.normalize(train_features, dim=1)
    targets = torch.as_tensor(train_targets)
    k = min(k, len(train))
    votes = torch.zeros(len(features), num_classes)
    # A chunk of queries at a time, as DINO does: all similarities at once would be queries x training images.
    for start in range(0, len(features), KNN_CHUNK):
        query = torch.nn.functional.normalize(features[start:start + KNN_CHUNK], dim=1)
        similarity, index = (query @ train.T).topk(k, dim=1)
        votes[start:start + KNN_CHUNK].scatter_add_(1, targets[index], (similarity / temperature).exp())
    return votes


def top1(scores, targets):
    import torch

    return (scores.argmax(1) == torch.as_tensor(targets)).float().mean().item()


def probe(backbone, *, dataset="cifar10", data_root=None, name=None, limit=None, test_limit=None,
          batch_size=None, epochs=100, device=None, dtype=None, progress=False, register=True):
    """Train a linear probe (and measure k-NN) on a backbone's frozen features; save it as a model."""
    from safetensors.torch import save_file

    from . import api
    from .registry import save_user_record

    check_name(name)
    train = get_dataset(dataset, data_root, "train").subset(limit)  # a missing dataset fails before a download
    test = get_dataset(dataset, data_root, "test").subset(test_limit)
    model = backbone if isinstance(backbone, Model) else api.load(backbone, device=device, dtype=dtype,
                                                                   batch_size=batch_size)
    if not model.supports("embed"):
        raise model.unsupported("embed", "A probe needs embeddings.")
    train_f = cached_features(model, train, progress=progress)
    test_f = cached_features(model, test, progress=progress)
    head = train_linear(train_f, train.targets, len(train.classes), epochs=epochs)
    linear = top1(linear_logits(head, test_f), test.targets)
    knn = top1(knn_predict(train_f, train.targets, test_f, len(train.classes)), test.targets)

    name = name or f"{model.name}+{train.name}"
    folder = home() / "probes" / check_name(name.replace("/", "_"))
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
    """A backbone's embeddings followed by a trained linear head; it decodes and batches as its backbone."""

    capabilities = frozenset({"classify", "embed"})
    embed_options = EmbedOptions  # backbones are image models

    def __init__(self, record, runtime, backbone, head, labels, weights_path=None):
        super().__init__(record, runtime, weights_path=weights_path)
        self.backbone, self.head, self.labels = backbone, head, tuple(labels)
        self.prepare, self.collate = backbone.prepare, backbone.collate

    @classmethod
    def load(cls, record, weights, runtime, options):
        from . import api

        if weights is None:
            raise ZooError(f"Probe {record.name!r} has no weights path; re-run 'zoo probe'.")
        labels, head = read_probe(Path(weights))
        backbone = api.load(record.model_args["backbone"], device=runtime.device, dtype=runtime.dtype,
                            batch_size=runtime.batch_size, workers=runtime.workers)
        return cls(record, runtime, backbone, head, labels, weights)

    def param_count(self):
        return self.backbone.param_count() + self.head["weight"].numel() + self.head["bias"].numel()

    def embed_batch(self, batch, options):
        return self.backbone.embed_batch(batch, options)

    def classify_batch(self, batch, options):
        features = self.backbone.embed_batch(batch, self.backbone.embed_options())
        if features.shape[-1] != self.head["weight"].shape[1]:
            raise ZooError(f"{self.name}: its head takes {self.head['weight'].shape[1]} features but "
                           f"{self.backbone.name} gives {features.shape[-1]}: it was trained on another backbone; "
                           "re-run 'zoo probe'.")
        return self.label_predictions(linear_logits(self.head, features), options)


def read_probe(folder):
    """(labels, head tensors) of a probe folder, checked: a damaged or edited one is one line."""
    from .weights import load_state_dict

    labels = read_json_object(folder / "config.json", "probe config").get("labels")
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
        raise ZooError(f"{folder / 'config.json'}: expected 'labels', a list of names; re-run 'zoo probe'.")
    head = load_state_dict(folder / "head.safetensors")
    shapes = {key: tuple(getattr(head.get(key), "shape", ())) for key in ("weight", "bias", "mean", "std")}
    width = shapes["weight"][-1] if len(shapes["weight"]) == 2 else None  # the backbone's features
    if shapes != {"weight": (len(labels), width), "bias": (len(labels),), "mean": (width,), "std": (width,)}:
        raise ZooError(f"{folder / 'head.safetensors'} does not hold a linear head for {len(labels)} labels "
                       f"(shapes {shapes}); re-run 'zoo probe'.")
    return labels, head


@hookimpl
def register_loaders(register):
    register(PLUGIN, ProbeModel)


@hookimpl
def register_commands(cli):
    import click

    from .cli import PATH, POSITIVE, bars, batch_size_option, device_option, dtype_option

    @cli.command(name="probe")
    @click.argument("backbone")
    @click.option("--dataset", default="cifar10", show_default=True)
    @click.option("--data-root", type=PATH, default=None)
    @click.option("--name", default=None, help="Name of the new model [BACKBONE+DATASET].")
    @click.option("--limit", type=POSITIVE, default=None, help="A seeded subset of N training images.")
    @click.option("--test-limit", type=POSITIVE, default=None, help="A seeded subset of N test images.")
    @click.option("--epochs", type=POSITIVE, default=100, show_default=True)
    @batch_size_option
    @device_option
    @dtype_option
    def probe_command(backbone, dataset, data_root, name, limit, test_limit, batch_size, epochs, device, dtype):
        """Train a linear probe on BACKBONE's frozen features; saves it as a new model."""
        r = probe(backbone, dataset=dataset, data_root=data_root, name=name, limit=limit, test_limit=test_limit,
                  batch_size=batch_size, epochs=epochs, device=device, dtype=dtype, progress=bars())
        click.echo(f"{r['name']}: linear top-1 {r['linear_top1']:.4f}, k-NN top-1 {r['knn_top1']:.4f} "
                   f"({r['train_images']} train / {r['test_images']} test images). Saved to {r['path']}")
