"""Registry, plugin and results hygiene: owned names, safe concurrent writes, migrations, cache keys, layering."""

import ast
import multiprocessing
import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

import zoo
from zoo import plugins, registry, results
from zoo.datasets import dataset_factories
from zoo.hookspecs import hookimpl

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore:zoo plugin:UserWarning")  # the refusals these tests provoke


class ClaimsTimm:
    @hookimpl
    def register_loaders(self, register):
        register("timm", zoo.Model)


class ClaimsCifar:
    @hookimpl
    def register_datasets(self, register):
        register("cifar10", lambda root=None, split="test": None)


class ClaimsList:
    @hookimpl
    def register_commands(self, cli):
        @cli.command(name="list")
        def hijack():
            """Not zoo's list."""


@pytest.mark.parametrize("plugin, kind, name", [(ClaimsTimm, "loader", "timm"), (ClaimsCifar, "dataset", "cifar10"),
                                                (ClaimsList, "command", "list")])
def test_a_name_another_plugin_owns_is_refused_naming_both(plugin, kind, name):
    plugins.load_plugins()
    plugins.register_plugin(plugin(), name="intruder")
    registry.registry(), dataset_factories()
    from zoo.cli import build_cli

    cli = build_cli()
    assert "hijack" not in (cli.commands["list"].callback.__name__,)
    failure = next(f for f in plugins.failures if f.plugin == "intruder")
    assert f"registers the {kind} '{name}'" in failure.error and "already registered" in failure.error
    assert registry.registry().loaders.owners["timm"] == "timm"
    assert CliRunner().invoke(cli, ["plugins"]).output.count("FAILED intruder") == 1


def test_override_replaces_a_name_on_purpose():
    class Replaces:
        @hookimpl
        def register_loaders(self, register):
            register("example", zoo.Model, override=True)

    plugins.load_plugins()
    plugins.register_plugin(Replaces(), name="replaces")
    assert registry.registry().loaders["example"] is zoo.Model and plugins.failures == []


def test_a_loader_must_be_a_model_class():
    class Function:
        @hookimpl
        def register_loaders(self, register):
            register("fn", lambda record, weights: None)

    plugins.load_plugins()
    plugins.register_plugin(Function(), name="fn")
    registry.registry()
    assert "must be a zoo.Model subclass" in next(f.error for f in plugins.failures if f.plugin == "fn")


def test_saving_a_user_record_keeps_models_registered_in_code():
    zoo.register({"name": "in-code", "plugin": "vit_cifar", "architecture": "vit"})
    registry.save_user_record({"name": "saved", "plugin": "vit_cifar", "architecture": "vit"})
    assert {"in-code", "saved"} <= set(zoo.list_models())


def _save(index):
    registry.reset()
    registry.save_user_record({"name": f"concurrent-{index}", "plugin": "vit_cifar", "architecture": "vit"})


def test_concurrent_user_record_writes_keep_every_record():
    context = multiprocessing.get_context("spawn")  # fork in a threaded process may deadlock the child
    workers = [context.Process(target=_save, args=(i,)) for i in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    registry.reset()
    assert {f"concurrent-{i}" for i in range(8)} <= set(zoo.list_models("concurrent-*"))


def test_results_database_migrates_an_old_schema_and_refuses_a_newer_one(tmp_path):
    old = tmp_path / "old.db"
    con = sqlite3.connect(old)
    con.execute(results.MIGRATIONS[0])  # what zoo 0.1 wrote, with no schema version
    con.execute("INSERT INTO results (model, run_id, dataset, split, top1) VALUES ('m', 'r', 'd', 's', 0.5)")
    con.commit()
    con.close()
    assert [r["model"] for r in results.query(old)] == ["m"]
    assert sqlite3.connect(old).execute("PRAGMA user_version").fetchone()[0] == len(results.MIGRATIONS)
    newer = tmp_path / "newer.db"
    sqlite3.connect(newer).execute("PRAGMA user_version = 99")
    with pytest.raises(zoo.ZooError, match="schema version 99, newer than this zoo"):
        results.query(newer)


def test_feature_cache_is_keyed_by_weights_content(tmp_path):
    import shutil

    from zoo.probe import fingerprint

    shipped = zoo.load("vit-cifar").weights_path
    copy = shutil.copytree(shipped, tmp_path / "copy")
    assert fingerprint(zoo.load("vit-cifar", weights=copy)) == fingerprint(zoo.load("vit-cifar"))
    (copy / "metrics.json").write_text("{}")
    assert fingerprint(zoo.load("vit-cifar", weights=copy)) != fingerprint(zoo.load("vit-cifar"))


def test_train_refuses_to_overwrite_a_run(tmp_path):
    from zoo.cli import build_cli

    (tmp_path / "metrics.json").write_text("{}")
    result = CliRunner().invoke(build_cli(), ["train", "vit-cifar", "--data-root", str(tmp_path), "--out", str(tmp_path)])
    assert result.exit_code == 1 and "--resume to continue it, --force to replace it" in result.output


CORE = ("records", "registry", "plugins", "hookspecs", "weights", "model", "errors", "config", "options", "runtime",
        "streaming", "inputs", "vision", "vlm", "labels", "files", "api", "hub", "lock", "catalogue")
FEATURES = ("bench", "probe", "evaluate", "results", "report", "datasets", "cli", "testing", "cache", "cache_cli",
            "sources", "outputs", "bulk", "ray_engine")


def imported_modules(path, top_level_only=False):
    names, tree = set(), ast.parse(path.read_text())
    for node in (tree.body if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.ImportFrom):
            names |= {f"{node.module}.{a.name}" if node.module else a.name for a in node.names}
            names.add(node.module or "")
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


@pytest.mark.parametrize("module", CORE)
def test_the_core_never_imports_the_features(module):
    found = imported_modules(ROOT / "zoo" / f"{module}.py")
    bad = {n for n in found for f in FEATURES if f in n.split(".")}  # whole names: http.client is not zoo's cli
    assert not bad, bad
    eager = imported_modules(ROOT / "zoo" / f"{module}.py", top_level_only=True)
    assert not any(n.startswith(("torch", "tokenizers", "transformers", "timm")) for n in eager)


def test_functions_stay_short():
    long = []
    for path in [*ROOT.glob("zoo/**/*.py"), *ROOT.glob("plugins/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 45:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not long



def test_ci_tests_every_declared_floor():
    """.ci/lowest.txt pins each dependency at the floor pyproject.toml declares: CI runs with every floor."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    def floor(line):  # "name>=1.2" or "name==1.2" -> (name, 1.2)
        requirement = Requirement(line)
        (bound,) = requirement.specifier
        return requirement.name, Version(bound.version)

    project = (ROOT / "pyproject.toml").read_text().split("[project]")[1]  # not the build system's
    floors = dict(floor(r) for r in re.findall(r'"([\w.\-\[\]]+>=[\d.]+)"', project))
    pins = dict(floor(line) for line in (ROOT / ".ci" / "lowest.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    assert pins.keys() == floors.keys() - {"flash-attn"}  # the gpu extra cannot be built here
    hub = "huggingface-hub"  # transformers 5.0 needs more than zoo's own floor
    assert {n: v for n, v in pins.items() if n != hub} == {n: floors[n] for n in pins if n != hub}
    assert pins[hub] >= floors[hub]
