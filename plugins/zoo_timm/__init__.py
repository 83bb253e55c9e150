"""Built-in plugin: timm backbones (DeiT, BEiT, DINO, MAE, any timm model as 'timm:<name>', and any timm model
published on the hub as 'timm:hf-hub:<repo>').

timm's pretrained config is the single source of truth: a record names the architecture (with its
pretrained tag) and holds only what differs; preprocessing, labels and the weights' hub location come
from timm unless the record gives them.
"""

import functools
from dataclasses import dataclass

import zoo
from zoo.options import given, option
from zoo.records import CROP_MODES, ModelRecord, Preprocess, Weights
from zoo.vision import ImageModel, build_network

PLUGIN = "timm"
PREFIX = "timm:"
HUB = "hf-hub:"  # timm's own prefix: 'hf-hub:<repo>[@revision]', a model saved with timm's push_to_hub
HUB_FILES = ["config.json", "model.safetensors"]  # not the pytorch_model.bin beside them: tensors only, once


@dataclass(frozen=True)
class Options:
    """timm.create_model arguments a user may change at load time."""

    num_classes: int | None = option(None, minimum=0)  # 0: no head (embeddings only)
    global_pool: str | None = None  # 'avg', 'token', ...
    img_size: int | None = option(None, minimum=1)
    model_args: dict | None = None  # any other timm.create_model keyword arguments, as timm takes them


def preprocess_of(cfg):
    """A zoo Preprocess from a timm data config (resolve_data_config's, with timm's defaults filled in)."""
    crop_mode = cfg.get("crop_mode") or "center"
    if crop_mode not in CROP_MODES:
        raise zoo.PluginError(f"timm's crop_mode {crop_mode!r} is not one zoo reproduces ({', '.join(CROP_MODES)}): "
                              "give the record a preprocess, or upgrade zoo.")
    return Preprocess(
        input_size=tuple(cfg["input_size"]),
        mean=tuple(float(x) for x in cfg["mean"]),
        std=tuple(float(x) for x in cfg["std"]),
        interpolation=cfg["interpolation"],
        crop_pct=float(cfg["crop_pct"]),
        crop_mode=crop_mode,
    )


def pretrained_cfg(architecture):
    timm = zoo.errors.require("timm", "timm")
    return timm.models.get_pretrained_cfg(architecture) if "." in architecture else None


class TimmModel(ImageModel):
    Options = Options
    attentions = ("sdpa", "eager")  # timm has no other

    @classmethod
    def load(cls, record, weights, runtime, options):
        """The network as timm.create_model(pretrained=True) builds it, from tensors zoo read (nothing downloaded)."""
        timm = zoo.errors.require("timm", "timm")
        from timm.data import resolve_data_config

        from zoo.labels import resolve_labels

        changes = {k: v for k, v in given(options).items() if v is not None and k != "model_args"}
        changes.update(options.model_args or {})
        args = {**record.model_args, **changes}
        module = build_network(record, functools.partial(create_model, record, weights), args)
        labels = resolve_labels(record.labels or default_labels(module)) if module.num_classes else None
        if labels is not None and len(labels) != module.num_classes:
            raise zoo.ZooError(f"{record.name}: {len(labels)} labels for a head of {module.num_classes} classes.")
        # The record's preprocessing wins; else timm's own config for this (possibly resized) module.
        size = args.get("img_size")
        data_args = {"img_size": size} if isinstance(size, int) else {}
        preprocess = record.preprocess or preprocess_of(resolve_data_config(data_args, model=module))
        attention = use_attention(module, runtime.attention or ("sdpa" if timm.layers.use_fused_attn() else "eager"))
        return cls(record, runtime, module, labels=labels, preprocess=preprocess, attention=attention,
                   weights_path=weights)


def use_attention(module, attention):
    """Every timm attention layer on PyTorch SDPA ('sdpa') or timm's own maths ('eager')."""
    for layer in module.modules():
        if hasattr(layer, "fused_attn"):
            layer.fused_attn = attention == "sdpa"
    return attention


def create_model(record, weights, **args):
    """timm.create_model with the weights loaded as timm loads pretrained ones: its checkpoint filter adapts them to
    the options (a new head for num_classes, position embeddings resampled for img_size), from the tensors zoo
    read safely (timm itself would unpickle a .pth file, and download)."""
    import timm

    from zoo.weights import load_state_dict, misfit

    if weights is None:
        return timm.create_model(architecture(record, weights), pretrained=False, **args)
    overlay = {"source": "timm", "state_dict": load_state_dict(weights)}  # 'timm': not the hub, not a local dir
    try:
        module = timm.create_model(architecture(record, weights), pretrained=True, pretrained_cfg_overlay=overlay,
                                   **args)
    except RuntimeError as e:
        if "state_dict" not in str(e):
            raise
        raise misfit(record.name, " ".join(str(e).split("\n", 1)[-1].split())) from None
    module.pretrained_cfg.pop("state_dict", None)  # the config would keep a second copy of every tensor alive
    return module


def architecture(record, weights):
    """What timm.create_model builds: the record's architecture; for a hub model, the downloaded folder, whose
    config.json (architecture, model arguments, pretrained config) timm reads as it does from the hub."""
    if not record.architecture.startswith(HUB):
        return record.architecture
    from pathlib import Path

    if weights is None or not (Path(weights) / "config.json").is_file():
        raise zoo.MissingWeights(f"{record.name}: a timm hub model needs the folder with its config.json and "
                                 f"model.safetensors, got {weights}.")
    return f"local-dir:{weights}"


def default_labels(module):
    """The label names the checkpoint's pretrained config carries (hub models), else timm's ImageNet-1k names for
    an ImageNet head."""
    names = module.pretrained_cfg.get("label_names")
    if isinstance(names, (list, tuple)) and len(names) == module.num_classes:
        return tuple(map(str, names))
    return "imagenet-1k" if module.num_classes == 1000 == module.pretrained_cfg.get("num_classes") else None


@zoo.hookimpl
def register_loaders(register):
    register(PLUGIN, TimmModel)


@zoo.hookimpl
def resolve_weights(record, offline):
    """A timm record without a weights source gets the hub file its pretrained config names."""
    if record.plugin != PLUGIN or record.weights is not None:
        return None
    from zoo.hub import snapshot

    if record.architecture.startswith(HUB):
        repo, revision = hub_location(record.architecture)
        return snapshot(record, Weights(hf=repo, revision=revision), offline, patterns=HUB_FILES)
    cfg = pretrained_cfg(record.architecture)
    if cfg is None or not cfg.hf_hub_id:
        return None
    return snapshot(record, Weights(hf=cfg.hf_hub_id, filename="model.safetensors"), offline)


@zoo.hookimpl
def resolve_model(name):
    """'timm:<architecture>[.<tag>]' reaches any timm model, with its pretrained config; 'timm:hf-hub:<repo>'
    any timm model on the hub (its architecture and labels come with its config.json)."""
    if not name.startswith(PREFIX):
        return None
    timm = zoo.errors.require("timm", "timm")
    arch = name[len(PREFIX):]
    if arch.startswith(HUB):
        return hub_record(name, arch)
    if not timm.is_model(arch):
        raise zoo.UnknownModel(name, [PREFIX + n for n in timm.list_models(arch.split(".")[0].split("_")[0] + "*")])
    cfg = timm.models.get_pretrained_cfg(arch)
    has_head = bool(cfg and cfg.num_classes)
    return ModelRecord(name=name, plugin=PLUGIN, architecture=arch if "." in arch or not cfg else f"{arch}.{cfg.tag}",
                       tasks=("classify", "embed") if has_head else ("embed",),
                       license=cfg.license if cfg else None, source="timm")


def hub_location(arch):
    """(repository, revision or None) from 'hf-hub:<owner>/<repo>[@revision]'."""
    repo, _, revision = arch[len(HUB):].partition("@")
    return repo, revision or None


def hub_record(name, arch):
    repo, _ = hub_location(arch)
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise zoo.BadInput(f"{name}: name a hub repository as timm does, 'timm:hf-hub:<owner>/<repo>[@revision]'.")
    return ModelRecord(name=name, plugin=PLUGIN, architecture=arch, tasks=("classify", "embed"), source="timm")
