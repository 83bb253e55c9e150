"""The one interface every loaded model speaks, and the result types it returns."""

from dataclasses import asdict, dataclass

from .errors import UnsupportedCapability


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    score: float

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class Detection:
    box: tuple  # (x0, y0, x1, y1) in pixels of the input image
    label: str
    score: float | None = None

    def to_dict(self):
        return asdict(self)


class Model:
    """Base class: subclasses set `capabilities` and implement those methods."""

    capabilities = frozenset()
    open_vocabulary = False  # classify(labels=...) takes any label names, not only the model's own
    attention = None  # the attention implementation in use (sdpa, flash_attention_2, eager), when known

    def __init__(self, record):
        self.record = record
        self.name = record.name

    def param_count(self):
        """Parameters of the loaded network (the record's published figure when unknown)."""
        network = getattr(self, "module", None) or getattr(self, "model", None)
        if network is not None and hasattr(network, "parameters"):
            return sum(p.numel() for p in network.parameters())
        return self.record.params

    def supports(self, capability):
        return capability in self.capabilities

    def classify(self, images, *, top_k=5, labels=None):
        """For each input, predictions sorted by score (probabilities)."""
        raise self.unsupported("classify")

    def describe(self, inputs, *, prompt=None, max_new_tokens=64):
        """One string per input."""
        raise self.unsupported("describe")

    def embed(self, images):
        """A float tensor with one row per input."""
        raise self.unsupported("embed")

    def detect(self, images, **kwargs):
        """For each input, a list of Detection."""
        raise self.unsupported("detect")

    def unsupported(self, capability, hint=""):
        from .registry import registry

        err = UnsupportedCapability(self.name, capability, registry().names(task=capability))
        if hint:
            err.args = (f"{err.args[0]} {hint}",)
        return err

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} {sorted(self.capabilities)}>"
