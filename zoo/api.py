"""The Python API: load, list_models, info, register_model."""

import dataclasses

from .catalogue import check_license
from .errors import BadInput, require
from .inputs import max_pixels
from .options import from_signature, given, validate
from .registry import register, registry
from .runtime import make_runtime, torch_release
from .weights import resolve


def load(name, *, weights=None, device=None, dtype=None, batch_size=None, compile=False, attention=None,
         device_map=None, max_memory=None, workers=None, **model_options):
    """A ready model.

    Runtime options are the same for every model: `weights` (a file or folder replacing the record's source),
    `device`, `dtype`, `batch_size`, `compile`, `attention`, `device_map` and `max_memory` (split a
    transformers model over devices, or offload it, as transformers does), `workers` (decoding threads).
    Anything else is a model option, checked against the model's declared `Options` before any work.
    """
    record = registry().get(name)
    check_license(record)
    max_pixels()  # a bad ZOO_MAX_IMAGE_PIXELS is one line here, not an error row for every input
    loader = registry().loader_for(record)
    options = model_options_of(loader, record, model_options)
    runtime = make_runtime(device=device, dtype=dtype, batch_size=batch_size, compile=compile, attention=attention,
                           device_map=device_map, max_memory=max_memory, workers=workers)
    for module, extra in getattr(loader, "requires", {}).items():  # named before gigabytes of weights download
        require(module, extra)
    check_runtime_fits(record, loader, runtime)
    return loader.load(record, resolve(record, weights), runtime, options)


def check_runtime_fits(record, loader, runtime):
    """Runtime options a model family may not take are refused before any weights load, never ignored."""
    choices = getattr(loader, "attentions", ())
    if runtime.attention is not None and runtime.attention not in choices:
        raise BadInput(f"{record.name} runs attention with {' or '.join(choices) or 'its own code'}, not "
                       f"{runtime.attention}: leave attention out.")
    if runtime.device_map is not None and not getattr(loader, "places_layers", False):
        raise BadInput(f"{record.name} runs on one device: device_map splits transformers models (Florence-2, "
                       "Qwen2-VL) over devices; use device= instead.")
    oldest = getattr(loader, "compile_needs_torch", None)
    if runtime.compile and oldest and (installed := torch_release()) < oldest:
        raise BadInput(f"{record.name}: compile=True needs torch >= {'.'.join(map(str, oldest))}, whose compiler "
                       f"traces its generation (this is torch {'.'.join(map(str, installed))}): upgrade torch, or leave "
                       "compile off.")


RUNTIME_OPTIONS = ("weights", "device", "dtype", "batch_size", "compile", "attention", "device_map", "max_memory",
                   "workers")


def model_options_of(loader, record, values):
    """The loader's Options from `values`; the record's model_args that name an option are its defaults."""
    names = {f.name for f in dataclasses.fields(loader.Options)}
    defaults = {k: v for k, v in record.model_args.items() if k in names}
    return validate(loader.Options, {**defaults, **values}, record.name)


def check_options(name, capability=None, model_options=None, call_options=None):
    """Check a model's load options (and one call's options) without loading it: the CLI fails fast."""
    record = registry().get(name)
    loader = registry().loader_for(record)
    model_options_of(loader, record, model_options or {})
    if capability is not None:
        validate(loader.options_for(capability), call_options or {}, f"{record.name}.{capability}")


def list_models(pattern=None, *, task=None, plugin=None):
    """Registered names, naturally sorted; `pattern` is an fnmatch pattern over names and aliases."""
    return registry().names(pattern, task=task, plugin=plugin)


def info(name):
    """The model's record, without importing torch or transformers."""
    return registry().get(name)


def register_model(name, **fields):
    """Decorator: register a builder that returns an nn.Module (logits from forward) or a zoo Model.

    The builder's keyword arguments are the model's options: zoo.load("my-net", width=32).

    @zoo.register_model("my-net", labels=["cat", "dog"], preprocess={"input_size": 64})
    def my_net(width=16):
        return MyNet(width)
    """

    override = fields.pop("override", False)

    def decorate(builder):
        record = {"name": name, "plugin": "code", "architecture": builder.__qualname__, **fields}
        register(record, loader=BuilderLoader(builder), override=override)
        return builder

    return decorate


class BuilderLoader:
    """Loads a model registered in code from its builder function."""

    reads_video = False  # an image model: bulk inference hands it video frames

    def __init__(self, builder):
        self.builder = builder
        self.Options = from_signature(builder, {}, f"{builder.__name__}_options")

    @staticmethod
    def options_for(capability):
        from .vision import ImageModel

        return ImageModel.options_for(capability)

    def load(self, record, weights, runtime, options):
        from .labels import resolve_labels
        from .model import Model
        from .vision import ImageModel, build_network
        from .weights import apply_state_dict, load_state_dict

        built = build_network(record, self.builder, given(options), where="its zoo.register_model call")
        if isinstance(built, Model):
            return built
        if weights is not None:
            apply_state_dict(built, load_state_dict(weights), record.name)
        return ImageModel(record, runtime, built, labels=resolve_labels(record.labels), weights_path=weights)
