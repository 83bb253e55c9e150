"""The Python API: load, list_models, info, register, register_model."""

from .registry import register, registry
from .weights import resolve


def load(name, *, device=None, dtype=None, weights=None, **overrides):
    """A ready model. `weights` (a file or directory) replaces the record's source."""
    record = registry().get(name)
    loader = registry().loader_for(record)
    path = resolve(record, weights)
    model = loader(record, path, device=device, dtype=dtype, **overrides)
    model.weights_path = path
    return model


def list_models(pattern=None, *, task=None, plugin=None):
    """Registered names, naturally sorted; `pattern` is an fnmatch pattern over names and aliases."""
    return registry().names(pattern, task=task, plugin=plugin)


def info(name):
    """The model's record, without importing torch or transformers."""
    return registry().get(name)


def register_model(name, **fields):
    """Decorator: register a builder that returns an nn.Module (logits from forward) or a zoo Model.

    @zoo.register_model("my-net", labels=["cat", "dog"], preprocess={"input_size": 64})
    def my_net():
        return MyNet()
    """

    override = fields.pop("override", False)

    def decorate(builder):
        record = {"name": name, "plugin": "code", "architecture": builder.__qualname__, **fields}
        register(record, loader=_builder_loader(builder), override=override)
        return builder

    return decorate


def _builder_loader(builder):
    def load_built(record, weights, *, device=None, dtype=None, **overrides):
        from .labels import resolve_labels
        from .model import Model
        from .vision import ImageModel
        from .weights import load_state_dict

        built = builder(**{**record.model_args, **overrides})
        if isinstance(built, Model):
            return built
        if weights is not None:
            built.load_state_dict(load_state_dict(weights))
        return ImageModel(record, built, labels=resolve_labels(record.labels), device=device, dtype=dtype)

    return load_built
