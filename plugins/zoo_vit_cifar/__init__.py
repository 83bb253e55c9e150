"""Built-in plugin: the from-scratch ViT trained on CIFAR-10 (`vit-cifar`), and `zoo train`."""

from pathlib import Path

import click

import zoo
from zoo.files import as_path, read_json_object
from zoo.cli import PATH, POSITIVE, PositiveFloat, device_option
from zoo.vision import ImageModel, build_network

from .presets import PRESETS

PLUGIN = "vit_cifar"


class VitCifar(ImageModel):
    attentions = ("sdpa",)

    @classmethod
    def load(cls, record, weights, runtime, options):
        """A ViT from a record; a training output folder's config.json overrides the record's."""
        from zoo.labels import resolve_labels
        from zoo.records import parse_record
        from zoo.weights import apply_state_dict, load_state_dict

        from .vit import ViT

        if weights is None:
            raise zoo.MissingWeights(f"Model {record.name!r} has no weights source; pass weights=DIR.")
        config_file = Path(weights) / "config.json"
        config = run_config(config_file)
        module = build_network(record, ViT, {**record.model_args, **config.get("model_args", {})},
                               where=config_file if "model_args" in config else None)
        apply_state_dict(module, load_state_dict(weights), record.name)
        preprocess = record.preprocess
        if "preprocess" in config:
            preprocess = parse_record({"name": record.name, "plugin": PLUGIN, "architecture": "vit",
                                       "preprocess": config["preprocess"]}, source=str(config_file)).preprocess
        labels = config.get("labels") or resolve_labels(record.labels)
        return cls(record, runtime, module, labels=labels, preprocess=preprocess, attention="sdpa",
                   weights_path=weights)


def run_config(path):
    """A training output folder's config.json as a mapping (none there: {})."""
    if not path.is_file():
        return {}
    config = read_json_object(path, "run config")
    if not isinstance(config.get("model_args", {}), dict):
        raise zoo.BadInput(f"{path}: expected a JSON object whose model_args is an object.")
    return config


@zoo.hookimpl
def register_loaders(register):
    register(PLUGIN, VitCifar)


@click.command(name="train")
@click.argument("name", type=click.Choice(["vit-cifar"]), metavar="NAME")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="cpu", show_default=True)
@click.option("--data-root", type=PATH, required=True, help="Folder with cifar-10-batches-py/.")
@click.option("--out", type=PATH, default=None, help="Output folder [runs/NAME-PRESET].")
@click.option("--epochs", type=POSITIVE, default=None, help="Override the preset's epochs.")
@click.option("--batch-size", type=POSITIVE, default=None, help="Global batch size (over all processes).")
@click.option("--lr", type=PositiveFloat(), default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@device_option
@click.option("--limit", type=POSITIVE, default=None, help="Use only the first N training images.")
@click.option("--test-limit", type=POSITIVE, default=None, help="Evaluate on the first N test images.")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where it stopped.")
@click.option("--force", is_flag=True, help="Start afresh even if --out holds a run (it is replaced).")
@click.option("--register", "register_as", default=None, help="Register the result under this model name.")
def train_command(name, preset, data_root, out, epochs, batch_size, lr, seed, device, limit, test_limit, resume,
                  force, register_as):
    """Train NAME on CIFAR-10 from scratch (multi-GPU: torchrun --nproc_per_node N -m zoo train ...)."""
    from .train import train

    out = as_path(out or f"runs/{name}-{preset}")
    if not (resume or force) and any((out / f).exists() for f in ("checkpoint.safetensors", "metrics.json")):
        raise zoo.ZooError(f"{out} holds a training run already: pass --resume to continue it, --force to "
                           "replace it, or --out for another folder.")
    try:
        metrics = train(preset, data_root=data_root, out=out, seed=seed, resume=resume, device=device,
                        limit=limit, test_limit=test_limit, epochs=epochs, batch_size=batch_size, lr=lr)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    if metrics is None:
        return  # a non-zero rank under torchrun
    click.echo(f"{name} ({preset}): test top-1 {metrics['test_top1']:.4f}, top-5 {metrics['test_top5']:.4f}, "
               f"{metrics['train_time_s']:.0f} s. Saved to {out}")
    if register_as:
        click.echo(f"Registered {register_as!r} in {register_run(register_as, name, preset, out, metrics)}")


def register_run(register_as, name, preset, out, metrics):
    return zoo.registry.save_user_record({
        "name": register_as, "plugin": PLUGIN, "architecture": "vit", "weights": {"path": str(out.resolve())},
        "labels": "cifar10", "tasks": ["classify", "embed"],
        "metrics": {"cifar10_top1": metrics["test_top1"], "cifar10_top5": metrics["test_top5"]},
        "description": f"ViT trained with 'zoo train {name} --preset {preset}'",
    })


@zoo.hookimpl
def register_commands(cli):
    cli.add_command(train_command)
