"""zoo: a plugin-based model zoo for vision models."""

from .api import info, list_models, load, register_model
from .errors import (
    BadInput,
    InvalidRecord,
    MissingDependency,
    MissingWeights,
    PluginError,
    UnknownModel,
    UnsafeWeights,
    UnsupportedCapability,
    ZooError,
)
from .hookspecs import hookimpl
from .model import Detection, Model, Prediction
from .ray_engine import RayPredictor
from .runtime import Runtime
from .vision import ImageModel
from .vlm import VisionLanguageModel
from .records import ModelRecord, Preprocess, Weights
from .registry import register

__version__ = "0.2.0"


def run(model, inputs, *, task, out, **options):
    """Bulk inference over files, folders, manifests and videos into a results file; see zoo.bulk.run."""
    from .bulk import run as bulk_run

    return bulk_run(model, inputs, task=task, out=out, **options)


def compare(models, *, dataset="cifar10", **options):
    """Benchmark models on one dataset; see zoo.bench.compare."""
    from .bench import compare as run

    return run(models, dataset=dataset, **options)


__all__ = [
    "BadInput", "Detection", "InvalidRecord", "MissingDependency", "MissingWeights", "Model", "ModelRecord",
    "ImageModel", "PluginError", "Prediction", "Preprocess", "RayPredictor", "Runtime", "UnknownModel", "UnsafeWeights",
    "UnsupportedCapability", "VisionLanguageModel", "Weights", "ZooError", "compare", "hookimpl", "info",
    "list_models", "load", "register", "register_model", "run",
]
