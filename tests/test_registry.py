"""The catalogue: registry.yaml, merging, overrides, YAML validation, lookup."""

import pytest
import yaml

import zoo
from zoo import registry
from zoo.records import parse_record

GOOD = """
- name: my-net
  aliases: [mine]
  plugin: vit_cifar
  architecture: vit
  weights: {path: weights/}
  labels: [a, b]
  tasks: [classify]
"""

SCOPE = [
    "vit-cifar",
    "deit-tiny", "deit-small", "deit-base", "deit-base-384", "deit-tiny-distilled", "deit-small-distilled",
    "deit-base-distilled", "deit-base-distilled-384", "beit-base", "beit-large",
    "dino-vits16", "dino-vits8", "dino-vitb16", "dino-vitb8", "mae-vitb16", "mae-vitl16", "mae-vith14",
    "florence-2-base", "florence-2-large", "florence-2-base-ft", "florence-2-large-ft",
    "qwen2-vl-2b-instruct", "qwen2-vl-7b-instruct",
]


def test_every_model_in_scope_has_a_valid_record():
    names = zoo.list_models()
    assert set(SCOPE) <= set(names)
    for name in SCOPE:
        record = zoo.info(name)
        assert record.tasks and record.license and record.paper and record.params, name
        assert record.weights is not None or record.plugin == "timm", name  # timm's config names them


def test_hub_records_pin_a_revision_or_a_file():
    for name in zoo.list_models():
        w = zoo.info(name).weights
        if w and w.hf and w.hf.startswith("Qwen/"):
            assert w.revision and len(w.revision) == 40


def test_list_models_patterns_tasks_plugins_natural_sort():
    assert zoo.list_models("dino-*") == ["dino-vitb8", "dino-vitb16", "dino-vits8", "dino-vits16"]
    assert "vit-cifar" in zoo.list_models(task="classify")
    assert "dino-vits16" not in zoo.list_models(task="classify")
    assert zoo.list_models(plugin="qwen2vl") == ["qwen2-vl-2b-instruct", "qwen2-vl-7b-instruct"]
    assert zoo.list_models("vit_cifar10") == ["vit-cifar"]  # patterns match aliases too


def test_info_is_a_frozen_record_with_to_dict():
    record = zoo.info("vit_cifar10")  # by alias
    assert record.name == "vit-cifar"
    with pytest.raises(AttributeError):
        record.name = "x"
    d = record.to_dict()
    assert d["labels"] == "cifar10" and d["weights"] == {"package": "zoo_vit_cifar/weights"}
    assert d["preprocess"]["input_size"] == [3, 32, 32]


def test_unknown_model_suggests_close_matches():
    with pytest.raises(zoo.UnknownModel) as e:
        zoo.info("deit-tiyn")
    assert "deit-tiny" in e.value.matches
    assert "Did you mean: deit-tiny" in str(e.value)


def test_user_yaml_from_zoo_registry(registry_file):
    path = registry_file(GOOD)
    record = zoo.info("mine")
    assert record.name == "my-net" and record.labels == ("a", "b") and record.source == str(path)


def test_user_config_file_in_zoo_home(tmp_path):
    home = zoo.weights.home()
    home.mkdir(parents=True)
    (home / "registry.yaml").write_text(GOOD)
    assert zoo.info("my-net").source == str(home / "registry.yaml")


def test_same_name_twice_is_an_error_unless_override(registry_file):
    registry_file(GOOD.replace("my-net", "vit-cifar").replace("[mine]", "[]"))
    with pytest.raises(zoo.ZooError, match="already registered.*override"):
        zoo.list_models()
    registry_file(GOOD.replace("my-net", "vit-cifar").replace("[mine]", "[]") + "  override: true\n")
    assert zoo.info("vit-cifar").labels == ("a", "b")


def test_register_in_code_and_override():
    zoo.register({"name": "code-net", "plugin": "vit_cifar", "architecture": "vit"})
    assert "code-net" in zoo.list_models()
    with pytest.raises(zoo.ZooError, match="already registered"):
        zoo.register({"name": "code-net", "plugin": "vit_cifar", "architecture": "vit"})
    zoo.register({"name": "code-net", "plugin": "vit_cifar", "architecture": "vit", "tasks": ["embed"]}, override=True)
    assert zoo.info("code-net").tasks == ("embed",)


def test_alias_clash_is_an_error():
    with pytest.raises(zoo.InvalidRecord, match="aliases"):
        zoo.register({"name": "other", "plugin": "x", "architecture": "y", "aliases": ["vit_cifar10"]})


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"plugin": None}, "plugin", "required"),
        ({"tasks": ["fly"]}, "tasks", "unknown task"),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"weights": {"url": "https://x/y.safetensors"}}, "weights.sha256", "needs the sha256"),
        ({"weights": {"hf": "a/b", "path": "c"}}, "weights", "exactly one"),
        ({"weights": {"path": "x", "sha256": "abc"}}, "weights.sha256", "64 lowercase hex"),
        ({"preprocess": {"mean": [0.5]}}, "preprocess.mean", "3 finite numbers"),
        ({"preprocess": {"interpolation": "cubic"}}, "preprocess.interpolation", "one of"),
        ({"preprocess": {"crop_pct": 2}}, "preprocess.crop_pct", "(0, 1]"),
        ({"preprocess": {"crop_mode": "fit"}}, "preprocess.crop_mode", "center, squash, border"),
        ({"labels": 3}, "labels", "label-set name"),
        ({"metrics": {"top1": "high"}}, "metrics", "number"),
        ({"params": -1}, "params", "positive"),
        ({"license": ["mit"]}, "license", "a string"),  # the licence policy reads it as text
        ({"description": 3}, "description", "a string"),
        ({"preprocess": {"input_size": [3, True, True]}}, "preprocess.input_size", "[channels, height, width]"),
    ],
)
def test_yaml_validation_names_file_record_and_field(registry_file, change, field, message):
    record = yaml.safe_load(GOOD)[0]
    record.update(change)
    record = {k: v for k, v in record.items() if v is not None}
    path = registry_file(yaml.safe_dump([record]))
    with pytest.raises(zoo.InvalidRecord) as e:
        zoo.list_models()
    assert e.value.field == field and e.value.record == "my-net" and e.value.source == str(path)
    assert str(path) in str(e.value) and "'my-net'" in str(e.value) and message in str(e.value)


def test_broken_yaml_and_wrong_shape_name_the_file(registry_file):
    path = registry_file("- name: [unclosed")
    with pytest.raises(zoo.ZooError, match=str(path)):
        zoo.list_models()
    registry_file("just a string")
    with pytest.raises(zoo.ZooError, match="expected a list"):
        zoo.list_models()


def test_record_round_trips_through_to_dict():
    record = zoo.info("deit-tiny")
    d = {k: v for k, v in record.to_dict().items() if k != "source"}
    assert parse_record(d, source=record.source) == record


def test_save_user_record_is_loaded_back_and_overrides_explicitly():
    path = registry.save_user_record({"name": "vit-cifar", "plugin": "vit_cifar", "architecture": "vit",
                                      "weights": {"path": "/somewhere"}})
    assert yaml.safe_load(path.read_text())["models"][0]["override"] is True
    assert zoo.info("vit-cifar").weights.path == "/somewhere"
