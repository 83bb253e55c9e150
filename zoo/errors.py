"""Every error zoo raises on purpose is a ZooError: the CLI prints its message and exits 1."""

import difflib


class ZooError(Exception):
    """Base class: the message names the thing that is wrong and how to fix it."""


class UnknownModel(ZooError, KeyError):
    def __init__(self, name, known=()):
        self.name = name
        self.matches = difflib.get_close_matches(name, [k for k in known if k != name], n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(self.matches)}?" if self.matches else ""
        shown = repr(name) if len(name) <= 80 else f"{name[:80]!r}... ({len(name)} characters)"  # one short line
        super().__init__(f"Unknown model {shown}.{hint} Run 'zoo list' to see every model.")

    def __str__(self):
        # KeyError would quote the whole message.
        return self.args[0]


class UnknownDataset(ZooError):
    pass


class InvalidRecord(ZooError):
    def __init__(self, source, record, field, problem):
        self.source, self.record, self.field = source, record, field
        super().__init__(f"{source}: record {record!r}, field {field!r}: {problem}")


class MissingWeights(ZooError):
    pass


class UnsafeWeights(ZooError):
    pass


class MissingDependency(ZooError):
    def __init__(self, module, extra):
        self.module, self.extra = module, extra
        super().__init__(f"This needs the Python package {module!r}: pip install 'zoo[{extra}]'")


class UnsupportedCapability(ZooError):
    def __init__(self, model, capability, models_with_it=()):
        self.model, self.capability = model, capability
        others = ", ".join(models_with_it[:8]) or "none registered"
        more = f" and {len(models_with_it) - 8} more ('zoo list --task {capability}')" if len(models_with_it) > 8 else ""
        super().__init__(f"Model {model!r} cannot {capability}. Models that can: {others}{more}.")


class BadInput(ZooError):
    pass


class PluginError(ZooError):
    """A plugin implements a hook zoo does not have, or with the wrong arguments."""


def require(module, extra):
    """Import an optional dependency, or explain which pip extra provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        if e.name and e.name.split(".")[0] != module.split(".")[0]:
            raise
        raise MissingDependency(module, extra) from None


def printable(text):
    """`text` as UTF-8 any results file can hold: bytes of a file name that are not UTF-8 (Python carries them as
    lone surrogates) become \\xNN escapes, as `ls -b` shows them; None stays None."""
    if text is None:
        return None
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
