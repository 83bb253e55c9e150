"""Named label sets a record can refer to instead of listing its labels inline."""

from .errors import ZooError

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _imagenet_1k():
    from .errors import require

    require("timm", "timm")
    from timm.data import ImageNetInfo

    # WordNet descriptions start with the common name: "tench, Tinca tinca" -> "tench".
    return tuple(d.split(",")[0].strip() for d in ImageNetInfo().label_descriptions())


LABEL_SETS = {"cifar10": lambda: CIFAR10, "imagenet-1k": _imagenet_1k}


def resolve_labels(spec):
    """A tuple of label names from a record's labels field (a set name or an inline list), or None."""
    if spec is None or isinstance(spec, tuple):
        return spec
    if spec not in LABEL_SETS:
        raise ZooError(f"Unknown label set {spec!r}; known sets: {', '.join(LABEL_SETS)}, or list the labels inline.")
    return LABEL_SETS[spec]()
