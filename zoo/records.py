"""The catalogue's schema: one frozen ModelRecord per model/weight, validated from YAML or code."""

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidRecord

TASKS = ("classify", "embed", "describe", "detect")
WEIGHT_KINDS = ("hf", "url", "path", "package")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
CROP_MODES = ("center", "squash", "border")  # timm's: keep the aspect ratio and crop, stretch, or fit and pad


@dataclass(frozen=True)
class Preprocess:
    input_size: tuple = (3, 224, 224)
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    interpolation: str = "bicubic"
    crop_pct: float = 1.0
    crop_mode: str = "center"


@dataclass(frozen=True)
class Weights:
    """Where the weights live: exactly one of hf (with revision), url (with sha256), path, package."""

    hf: str | None = None
    revision: str | None = None
    filename: str | None = None
    url: str | None = None
    sha256: str | None = None
    path: str | None = None
    package: str | None = None

    @property
    def kind(self):
        return next(k for k in WEIGHT_KINDS if getattr(self, k))

    def describe(self):
        if self.hf:
            return f"hf://{self.hf}@{self.revision or 'main'}" + (f"/{self.filename}" if self.filename else "")
        return f"{self.kind}:{getattr(self, self.kind)}"


@dataclass(frozen=True)
class ModelRecord:
    name: str
    plugin: str
    architecture: str
    aliases: tuple = ()
    model_args: dict = field(default_factory=dict)
    weights: Weights | None = None
    preprocess: Preprocess | None = None
    labels: Any = None  # a named set ("imagenet-1k", "cifar10") or an inline tuple of names
    tasks: tuple = ()
    license: str | None = None
    paper: str | None = None
    params: int | None = None
    metrics: dict = field(default_factory=dict)
    description: str | None = None
    source: str = "code"  # the file (or "code", or a plugin) the record came from

    def to_dict(self):
        d = dataclasses.asdict(self)
        return {k: _plain(v) for k, v in d.items()}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    return value


_FIELDS = {f.name for f in dataclasses.fields(ModelRecord)} - {"source"}


def parse_record(data, source="code"):
    """Build a ModelRecord from a mapping, naming the source, record and field of any problem."""
    if isinstance(data, ModelRecord):
        return data
    name = data.get("name") if isinstance(data, dict) else None

    def bad(fieldname, problem):
        return InvalidRecord(source, name or "?", fieldname, problem)

    if not isinstance(data, dict):
        raise bad("-", f"expected a mapping, got {type(data).__name__}")
    unknown = set(data) - _FIELDS - {"override"}
    if unknown:
        raise bad(sorted(unknown)[0], f"unknown field; the fields are: {', '.join(sorted(_FIELDS))}")
    for required in ("name", "plugin", "architecture"):
        if not isinstance(data.get(required), str) or not data[required].strip():
            raise bad(required, "required, a non-empty string")
    params = data.get("params")
    return ModelRecord(
        name=data["name"], plugin=data["plugin"], architecture=data["architecture"],
        aliases=tuple(_string_list(data.get("aliases", []), lambda p: bad("aliases", p))),
        model_args=_mapping(data, "model_args", "expected a mapping of keyword arguments", bad),
        weights=_weights(data.get("weights"), lambda f, p: bad(f, p)),
        preprocess=_preprocess(data.get("preprocess"), lambda f, p: bad(f, p)),
        labels=_labels(data.get("labels"), bad), tasks=_tasks(data.get("tasks", []), bad),
        license=_text(data, "license", bad), paper=_text(data, "paper", bad),
        params=int(params) if _positive(params, bad) else None,
        metrics=_mapping(data, "metrics", "expected a mapping of metric name to number", bad, numbers=True),
        description=_text(data, "description", bad), source=source,
    )


def _text(data, key, bad):
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise bad(key, "expected a string")
    return value


def _tasks(value, bad):
    tasks = _string_list(value, lambda p: bad("tasks", p))
    for task in tasks:
        if task not in TASKS:
            raise bad("tasks", f"unknown task {task!r}; tasks are: {', '.join(TASKS)}")
    return tuple(tasks)


def _mapping(data, key, problem, bad, numbers=False):
    value = data.get(key) or {}
    if not isinstance(value, dict) or (numbers and not all(isinstance(v, (int, float)) for v in value.values())):
        raise bad(key, problem)
    return dict(value)


def _labels(labels, bad):
    if isinstance(labels, list):
        names = _string_list(labels, lambda p: bad("labels", p))
        if not names or len(set(names)) != len(names) or not all(name.strip() for name in names):
            raise bad("labels", "expected distinct, non-empty label names (a prediction names one)")
        return tuple(names)
    if labels is not None and not isinstance(labels, str):
        raise bad("labels", "expected a label-set name (e.g. imagenet-1k) or a list of names")
    return labels


def _finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _positive(params, bad):
    if params is not None and (not _finite(params) or params <= 0):
        raise bad("params", "expected a positive, finite number")
    return params is not None


def _string_list(value, bad):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad("expected a list of strings")
    return value


def _check_keys(value, name, cls, bad):
    """Every key of the mapping `value` is a field of `cls`."""
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = [key for key in value if key not in allowed]
    if unknown:
        raise bad(f"{name}.{unknown[0]}", f"unknown key; the keys are: {', '.join(sorted(allowed))}")


def _weights(value, bad):
    if value is None:
        return None
    if isinstance(value, str):
        value = {"path": value}
    if not isinstance(value, dict):
        raise bad("weights", "expected a mapping such as {hf: org/repo, revision: ...}")
    _check_keys(value, "weights", Weights, bad)
    kinds = [k for k in WEIGHT_KINDS if value.get(k)]
    if len(kinds) != 1:
        raise bad("weights", f"give exactly one source of: {', '.join(WEIGHT_KINDS)}")
    sha = value.get("sha256")
    if sha is not None and not isinstance(sha, str):
        raise bad("weights.sha256", "YAML read it as a number: put the 64 hex digits in quotes")
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise bad("weights.sha256", "expected 64 lowercase hex digits")
    if kinds[0] == "url" and not sha:
        raise bad("weights.sha256", "a url source needs the sha256 of the file it downloads")
    return Weights(**{k: (str(v) if v is not None else None) for k, v in value.items()})


def _preprocess(value, bad):
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad("preprocess", "expected a mapping")
    _check_keys(value, "preprocess", Preprocess, bad)
    size = value.get("input_size", Preprocess.input_size)
    if isinstance(size, int):
        size = (3, size, size)
    if not (isinstance(size, (list, tuple)) and len(size) == 3 and all(_finite(s) and s == int(s) > 0 for s in size)):
        raise bad("preprocess.input_size", "expected [channels, height, width] or one integer")
    for key in ("mean", "std"):
        v = value.get(key, getattr(Preprocess, key))
        if not (isinstance(v, (list, tuple)) and len(v) == size[0] and all(_finite(x) for x in v)):
            raise bad(f"preprocess.{key}", f"expected {size[0]} finite numbers, one per channel")
        if key == "std" and not all(x > 0 for x in v):
            raise bad("preprocess.std", "every channel's std must be above 0 (images are divided by it)")
    interpolation = value.get("interpolation", Preprocess.interpolation)
    if interpolation not in INTERPOLATIONS:
        raise bad("preprocess.interpolation", f"expected one of {', '.join(INTERPOLATIONS)}")
    crop = value.get("crop_pct", Preprocess.crop_pct)
    if not _finite(crop) or not 0 < crop <= 1:
        raise bad("preprocess.crop_pct", "expected a number in (0, 1]")
    crop_mode = value.get("crop_mode", Preprocess.crop_mode)
    if crop_mode not in CROP_MODES:
        raise bad("preprocess.crop_mode", f"expected one of {', '.join(CROP_MODES)}")
    return Preprocess(
        input_size=tuple(int(s) for s in size),
        mean=tuple(float(x) for x in value.get("mean", Preprocess.mean)),
        std=tuple(float(x) for x in value.get("std", Preprocess.std)),
        interpolation=interpolation,
        crop_pct=float(crop),
        crop_mode=crop_mode,
    )
