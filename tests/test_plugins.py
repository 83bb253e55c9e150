"""Hook hygiene: every hook works, a misspelt hook is an error, a broken plugin spares the others."""

from importlib import metadata

import pytest

import zoo
from zoo import plugins, registry
from zoo.datasets import get_dataset
from zoo.hookspecs import hookimpl


def test_builtin_plugins_load_through_the_entry_point_group():
    names = {ep.name for ep in metadata.entry_points(group="zoo")}
    assert {"vit_cifar", "timm", "florence2", "qwen2vl", "datasets", "probe"} <= names
    loaded = {row["name"] for row in plugins.plugin_list()}
    assert {"vit_cifar", "timm", "florence2", "qwen2vl", "zoo.weights", "datasets", "probe"} <= loaded
    assert plugins.failures == []


def test_example_third_party_plugin_uses_every_registering_hook():
    assert "example" in {ep.name for ep in metadata.entry_points(group="zoo")}, "pip install ./examples/zoo-example-plugin"
    model = zoo.load("example-colour")
    data = get_dataset("example-colours")
    assert [r[0].label for r in model.classify(data.items)] == ["red", "green", "blue"]
    row = next(r for r in plugins.plugin_list() if r["name"] == "example")
    assert row["package"].startswith("zoo-example-plugin")
    assert set(row["hooks"]) == {"register_models", "register_loaders", "register_datasets", "register_commands"}


def test_zoo_plugins_env_limits_what_loads(monkeypatch):
    monkeypatch.setenv("ZOO_PLUGINS", "vit_cifar")
    plugins.reset()
    loaded = {row["name"] for row in plugins.plugin_list()}
    assert "vit_cifar" in loaded and "timm" not in loaded and "example" not in loaded
    with pytest.raises(zoo.ZooError, match="plugin 'timm', which is not loaded"):
        zoo.load("deit-tiny")
    monkeypatch.setenv("ZOO_PLUGINS", "vit_cifar,vit-cifar")  # a misspelt name is reported, not ignored
    plugins.reset()
    with pytest.warns(UserWarning, match="'vit-cifar' failed during ZOO_PLUGINS: no installed plugin has this name"):
        plugins.load_plugins()
    assert [(f.plugin, f.stage) for f in plugins.failures] == [("vit-cifar", "ZOO_PLUGINS")]


def test_misspelt_hook_is_an_error():
    class Typo:
        @hookimpl
        def register_modles(self, register):
            pass

    with pytest.raises(plugins.PluginError, match="register_modles.*register_models"):
        plugins.register_plugin(Typo(), name="typo")
    assert not plugins.pm.has_plugin("typo")


def test_wrong_hook_arguments_are_an_error():
    class WrongArgs:
        @hookimpl
        def register_models(self, registr):
            pass

    with pytest.raises(plugins.PluginError, match="registr"):
        plugins.register_plugin(WrongArgs(), name="wrong-args")


def test_plugin_that_fails_to_import_is_reported_and_spares_others(monkeypatch):
    real = metadata.entry_points
    broken = metadata.EntryPoint(name="broken", value="zoo_no_such_module_anywhere", group="zoo")
    monkeypatch.setattr(metadata, "entry_points", lambda group: [*real(group=group), broken])
    with pytest.warns(UserWarning, match="broken"):
        plugins.load_plugins()
    assert [(f.plugin, f.stage) for f in plugins.failures] == [("broken", "import")]
    assert "vit-cifar" in zoo.list_models()


def test_plugin_that_raises_while_registering_spares_others():
    class Raises:
        @hookimpl
        def register_models(self, register):
            raise RuntimeError("boom")

    plugins.load_plugins()
    plugins.register_plugin(Raises(), name="raises")
    with pytest.warns(UserWarning, match="boom"):
        names = zoo.list_models()
    assert "vit-cifar" in names and "example-colour" in names
    assert [(f.plugin, f.stage) for f in plugins.failures] == [("raises", "register_models")]


def test_plugin_with_a_bad_record_is_reported():
    class BadRecord:
        @hookimpl
        def register_models(self, register):
            register({"name": "bad", "plugin": "x"})

    plugins.load_plugins()
    plugins.register_plugin(BadRecord(), name="bad-record")
    with pytest.warns(UserWarning, match="architecture"):
        assert "bad" not in zoo.list_models()


def test_resolve_weights_hook_runs_before_the_builtin_resolver(tmp_path):
    weights = tmp_path / "from-plugin"
    weights.mkdir()

    class Source:
        @hookimpl
        def resolve_weights(self, record, offline):
            return weights if record.weights.hf == "acme/special" else None

    plugins.load_plugins()
    plugins.register_plugin(Source(), name="source")
    record = zoo.register({"name": "special", "plugin": "x", "architecture": "y", "weights": {"hf": "acme/special"}})
    assert zoo.weights.resolve(record) == weights
    other = zoo.register({"name": "plain", "plugin": "x", "architecture": "y", "weights": {"hf": "acme/plain"}})
    with pytest.raises(zoo.MissingWeights):
        zoo.weights.resolve(other)  # falls through to the built-in resolver, offline


def test_resolve_model_hook_serves_dynamic_names():
    class Dynamic:
        @hookimpl
        def resolve_model(self, name):
            if name.startswith("dyn:"):
                return zoo.ModelRecord(name=name, plugin="x", architecture=name[4:])

    plugins.load_plugins()
    plugins.register_plugin(Dynamic(), name="dynamic")
    assert zoo.info("dyn:thing").architecture == "thing"


def test_register_datasets_and_commands_hooks():
    from click.testing import CliRunner

    from zoo.cli import build_cli

    assert get_dataset("example-colours").classes == ("red", "green", "blue")
    result = CliRunner().invoke(build_cli(), ["colours"])
    assert result.exit_code == 0 and result.output == "red, green, blue\n"


def test_register_model_decorator_builds_an_nn_module(tmp_path):
    import torch

    @zoo.register_model("two-class", labels=["left", "right"], preprocess={"input_size": 8, "mean": [0, 0, 0],
                                                                           "std": [1, 1, 1]})
    def two_class():
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
        torch.nn.init.zeros_(net[1].weight)
        net[1].bias.data = torch.tensor([2.0, 0.0])
        return net

    model = zoo.load("two-class")
    assert model.classify(torch.zeros(3, 8, 8), top_k=1)[0][0].label == "left"
    registry.reset()
