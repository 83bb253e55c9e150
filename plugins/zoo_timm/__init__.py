"""Built-in plugin: timm backbones (DeiT, BEiT, DINO, MAE, and any timm model as 'timm:<name>')."""

import zoo
from zoo.records import ModelRecord, Preprocess, Weights

PLUGIN = "timm"
PREFIX = "timm:"
RUNTIME_OPTIONS = ("batch_size", "workers", "compile")


def preprocess_of(cfg):
    """A zoo Preprocess from a timm pretrained/data config: one source of truth for transforms."""
    return Preprocess(
        input_size=tuple(cfg["input_size"]),
        mean=tuple(float(x) for x in cfg["mean"]),
        std=tuple(float(x) for x in cfg["std"]),
        interpolation=cfg["interpolation"],
        crop_pct=float(cfg["crop_pct"]),
    )


def load(record, weights, *, device=None, dtype=None, **overrides):
    """timm.create_model without downloading, then weights from the zoo resolver (tensors only)."""
    timm = zoo.errors.require("timm", "timm")
    from timm.data import resolve_data_config

    from zoo.labels import resolve_labels
    from zoo.vision import ImageModel
    from zoo.weights import load_state_dict

    runtime = {k: overrides.pop(k) for k in RUNTIME_OPTIONS if k in overrides}
    module = timm.create_model(record.architecture, pretrained=False, **{**record.model_args, **overrides})
    if weights is not None:
        module.load_state_dict(load_state_dict(weights))
    labels = resolve_labels(record.labels) if module.num_classes else None
    if labels is not None and len(labels) != module.num_classes:
        raise zoo.ZooError(f"{record.name}: {len(labels)} labels for a head of {module.num_classes} classes.")
    preprocess = preprocess_of(resolve_data_config({}, model=module))
    attention = "sdpa" if timm.layers.use_fused_attn() else "eager"
    return ImageModel(record, module, labels=labels, preprocess=preprocess, device=device, dtype=dtype,
                      attention=attention, **runtime)


@zoo.hookimpl
def register_loaders(register):
    register(PLUGIN, load)


@zoo.hookimpl
def resolve_model(name):
    """'timm:<architecture>[.<tag>]' reaches any timm model, with its pretrained config."""
    if not name.startswith(PREFIX):
        return None
    timm = zoo.errors.require("timm", "timm")
    arch = name[len(PREFIX):]
    if not timm.is_model(arch):
        raise zoo.UnknownModel(name, [PREFIX + n for n in timm.list_models(arch.split(".")[0].split("_")[0] + "*")])
    cfg = timm.models.get_pretrained_cfg(arch)
    has_head = bool(cfg and cfg.num_classes)
    return ModelRecord(
        name=name,
        plugin=PLUGIN,
        architecture=arch,
        weights=Weights(hf=cfg.hf_hub_id, filename="model.safetensors") if cfg and cfg.hf_hub_id else None,
        preprocess=preprocess_of(cfg.to_dict()) if cfg else None,
        labels="imagenet-1k" if cfg and cfg.num_classes == 1000 else None,
        tasks=("classify", "embed") if has_head else ("embed",),
        license=cfg.license if cfg else None,
        source="timm",
    )
