"""The hooks a zoo plugin can implement. Every one is optional."""

import pluggy

hookspec = pluggy.HookspecMarker("zoo")
hookimpl = pluggy.HookimplMarker("zoo")


@hookspec
def register_models(register):
    """Register model records: register(record_or_mapping, override=False)."""


@hookspec
def register_loaders(register):
    """Register loaders: register(plugin_name, fn(record, weights, *, device, dtype, **overrides) -> Model)."""


@hookspec(firstresult=True)
def resolve_model(name):
    """Return a ModelRecord for a name no record carries (such as 'timm:convnext_tiny'), or None."""


@hookspec(firstresult=True)
def resolve_weights(record, offline):
    """Return a local path holding the record's weights, or None to let the next resolver try."""


@hookspec
def register_datasets(register):
    """Register benchmark datasets: register(name, fn(root=None, split='test') -> Dataset)."""


@hookspec
def register_commands(cli):
    """Add commands to the 'zoo' click group."""
