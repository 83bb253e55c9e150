"""Hostile input: nothing a user passes runs code, reaches the network offline, exhausts memory, loses results
or prints a traceback. One test (or table row) per finding of the fuzzing pass."""

import base64
import errno
import io
import json
import os
import pickle
import re
import shutil
import socket
import sqlite3
import sys
import time
from importlib import metadata
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file

import zoo
from zoo import bench, outputs, plugins, probe, registry, results
from zoo.cli import build_cli
from zoo.hookspecs import hookimpl
from zoo.inputs import load_image
from zoo.sources import Sources, frames
from zoo.streaming import Failed
from zoo.testing import write_video

pytestmark = pytest.mark.filterwarnings("ignore:zoo plugin:UserWarning")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    attempts = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise AssertionError(f"network access to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def cifar_folder(tmp_path, batch=None, raw=None):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir(exist_ok=True)
    good = pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 2]}, protocol=2)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(good)
    if batch is not None or raw is not None:
        (folder / "test_batch").write_bytes(raw if raw is not None else pickle.dumps(batch, protocol=2))
    return tmp_path


# -- 1. data files never run code --------------------------------------------------------------------


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {Path(os.environ['ZOO_HOME']).parent / 'pwned'}",))


def test_a_pickled_cifar_batch_cannot_run_code(tmp_path):
    root = cifar_folder(tmp_path, batch={"data": Payload(), "labels": [0]})
    with pytest.raises(zoo.ZooError, match="refusing to unpickle posix.system"):
        zoo.datasets.cifar10(root, "test")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("batch, raw, message", [
    (None, b"\x80\x02}q\x00(X", "not a readable CIFAR-10 batch"),  # truncated
    ({"data": np.zeros((2, 100), np.uint8), "labels": [1, 2]}, None, "N x 3072"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 12]}, None, "between 0 and 9"),
    ({"data": np.zeros((0, 3072), np.uint8), "labels": []}, None, "N x 3072"),  # empty
    ({"data": np.full((1, 3072), 300, np.int32), "labels": [1]}, None, "outside 0..255"),
])
def test_damaged_cifar_batches_say_what_is_wrong(tmp_path, batch, raw, message):
    with pytest.raises(zoo.ZooError, match=message):
        zoo.datasets.cifar10(cifar_folder(tmp_path, batch, raw), "test")


# -- 2. offline means no request ----------------------------------------------------------------------


def test_offline_urls_in_chat_messages_make_no_request(qwen2vl_tiny, no_network, samples):
    model = zoo.load("qwen2-vl-2b-instruct", weights=qwen2vl_tiny, min_pixels=3136, max_pixels=12544)
    chat = [{"role": "user", "content": [{"type": "image", "image": "http://127.0.0.1:9/cat.png"},
                                         {"type": "text", "text": "What is it?"}]}]
    with pytest.raises(zoo.BadInput, match="need the network, and downloads are off"):
        model.describe(chat, max_new_tokens=2)
    with pytest.raises(zoo.BadInput, match="need the network"):
        zoo.load("vit-cifar").classify("https://example.com/cat.png")
    with pytest.raises(zoo.BadInput, match="video URLs need the network"):
        model.describe([{"role": "user", "content": [{"type": "video", "video": "http://127.0.0.1:9/clip.mp4"}]}])
    [frame] = Sources().items("http://127.0.0.1:9/clip.mp4")  # an image model's frames of a video URL
    assert "video URLs need the network" in frame.value.error
    encoded = base64.b64encode((samples / "cat.png").read_bytes()).decode()
    chat[0]["content"][0]["image"] = f"data:image/png;base64,{encoded}"
    assert model.describe(chat, max_new_tokens=2)  # decoded locally
    assert no_network == []
    with pytest.raises(zoo.BadInput, match="base64 payload is damaged"):
        load_image("data:image/png;base64,not base64!")
    # qwen-vl-utils downloads an image_url part itself, offline or not: zoo reads it instead.
    chat[0]["content"][0] = {"type": "image_url", "image_url": "http://127.0.0.1:9/cat.png"}
    with pytest.raises(zoo.BadInput, match="need the network, and downloads are off"):
        model.describe(chat, max_new_tokens=2)
    chat[0]["content"][0]["image_url"] = str(samples / "cat.png")
    assert model.describe(chat, max_new_tokens=2) == model.describe(samples / "cat.png", prompt="What is it?",
                                                                     max_new_tokens=2)
    assert no_network == []


def test_offline_loading_and_running_make_no_request(no_network, florence2_tiny, qwen2vl_tiny, samples, tmp_path):
    assert zoo.load("florence-2-base", weights=florence2_tiny).describe(samples / "cat.png", max_new_tokens=2)
    qwen = zoo.load("qwen2-vl-2b-instruct", weights=qwen2vl_tiny, min_pixels=3136, max_pixels=12544)
    assert qwen.describe(samples / "cat.png", max_new_tokens=2)
    with pytest.raises(zoo.MissingWeights, match="downloads are off"):
        zoo.load("deit-tiny")
    with pytest.raises(zoo.ZooError, match="downloads are off"):
        zoo.datasets.cifar10(tmp_path)
    assert no_network == []


# -- 3. a weights folder is checked before anything is built --------------------------------------------


@pytest.mark.parametrize("name", ["florence-2-base", "qwen2-vl-2b-instruct"])
def test_a_folder_without_config_is_refused_before_building(tmp_path, name):
    save_file({"x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(zoo.MissingWeights, match="has no config.json"):
        zoo.load(name, weights=tmp_path)
    with pytest.raises(zoo.MissingWeights, match="must be a save_pretrained folder"):
        zoo.load(name, weights=tmp_path / "model.safetensors")  # a file where a folder is expected


# -- 4. a folder's sha256 is checked -----------------------------------------------------------------------


def test_a_folder_sha256_is_the_hash_of_its_manifest(tmp_path, registry_file):
    from zoo.weights import content_hash

    shipped = zoo.load("vit-cifar").weights_path
    good = content_hash(shipped)
    for sha, ok in ((good, True), ("0" * 64, False)):
        registry_file(f"- {{name: pinned, plugin: vit_cifar, architecture: vit, labels: cifar10, "
                      f"weights: {{path: '{shipped}', sha256: '{sha}'}}}}")
        if ok:
            assert zoo.load("pinned").classify(np.zeros((32, 32, 3), np.uint8))
        else:
            with pytest.raises(zoo.UnsafeWeights, match="sha256 mismatch"):
                zoo.load("pinned")


# -- 5. a probe never trains on its own test images ------------------------------------------------------


def test_a_flat_folder_cannot_probe_itself(tmp_path, samples):
    for label in ("cat", "dog"):
        (tmp_path / "flat" / label).mkdir(parents=True)
        Image.open(samples / f"{label}.png").save(tmp_path / "flat" / label / "a.png")
    row = bench.compare(["vit-cifar"], dataset=str(tmp_path / "flat"), protocol="probe").rows[0]
    assert row["status"] == "failed" and "would grade itself" in row["error"]


# -- 6. images decode as they look -------------------------------------------------------------------------


def test_16_bit_png_and_exif_orientation(tmp_path):
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    pixels = np.asarray(load_image(tmp_path / "deep.png"))
    assert pixels.min() == 0 and 200 < pixels.max() <= 255 and len(np.unique(pixels)) > 100
    assert np.array_equal(np.asarray(load_image(Image.open(tmp_path / "deep.png"))), pixels)  # in memory too
    premultiplied = Image.new("La", (4, 4), (100, 128))  # PIL converts it to LA only
    assert np.asarray(load_image(premultiplied))[0, 0].tolist() == [199, 199, 199]
    wide = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = wide.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    wide.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").size == (20, 40)


# -- 7. values that are not numbers, labels that are not lists ------------------------------------------


def test_nan_pixels_string_labels_and_zero_std(registry_file):
    model = zoo.load("vit-cifar")
    with pytest.raises(zoo.BadInput, match="finite values"):
        model.classify(torch.full((3, 8, 8), float("nan")))
    with pytest.raises(zoo.BadInput, match="must be a list of str"):
        model.classify(np.zeros((8, 8, 3), np.uint8), labels="cat")
    with pytest.raises(zoo.BadInput, match="distinct"):
        model.classify(np.zeros((8, 8, 3), np.uint8), labels=["cat", "cat"])
    registry_file("- {name: flat, plugin: vit_cifar, architecture: vit, preprocess: {std: [0, 0, 0]}}")
    with pytest.raises(zoo.InvalidRecord, match="std must be above 0"):
        zoo.list_models()


# -- 8. memory does not grow with the number of inputs --------------------------------------------------


def test_a_long_list_is_not_decoded_ahead_of_the_model():
    from zoo.model import PREFETCH_BATCHES

    model = zoo.load("vit-cifar", batch_size=8)
    seen, prepare = [], model.prepare
    model.prepare = lambda item: time.sleep(0.0005) or seen.append(1) or prepare(item)  # slow: prefetched
    stream = model.embed_stream([np.zeros((32, 32, 3), np.uint8)] * 2000)
    next(stream)
    time.sleep(0.2)  # let the prefetch thread fill the queue
    assert 8 < len(seen) <= (PREFETCH_BATCHES + 2) * 8  # read ahead, but only as far as the queue allows
    stream.close()


# -- 9. plugins cannot take others down --------------------------------------------------------------------


def fake_entry_point(monkeypatch, name, module):
    real = metadata.entry_points

    def entry_points(**kwargs):
        found = list(real(**kwargs))
        return found + [metadata.EntryPoint(name, module, "zoo")] if kwargs.get("group") == "zoo" else found

    monkeypatch.setattr(metadata, "entry_points", entry_points)


def test_a_third_party_entry_point_named_like_a_builtin_is_refused(monkeypatch):
    fake_entry_point(monkeypatch, "timm", "zoo_example_plugin")
    plugins.reset()
    assert plugins.load_plugins().get_plugin("timm").__name__ == "zoo_timm"
    assert any(f.plugin == "timm" and "Two plugins are named 'timm'" in f.error for f in plugins.failures)


def test_a_plugin_that_exits_at_import_is_reported(monkeypatch, tmp_path):
    (tmp_path / "exits_at_import.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_entry_point(monkeypatch, "exits", "exits_at_import")
    plugins.reset()
    assert "vit-cifar" in zoo.list_models()
    assert any(f.plugin == "exits" and "SystemExit" in f.error for f in plugins.failures)


def test_resolvers_that_raise_are_reported_and_skipped():
    class Broken:
        @hookimpl
        def resolve_model(self, name):
            raise RuntimeError("resolver bug")

        @hookimpl
        def resolve_weights(self, record, offline):
            raise RuntimeError("resolver bug")

    plugins.load_plugins()
    plugins.register_plugin(Broken(), name="broken")
    assert zoo.load("vit-cifar").classify(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(zoo.UnknownModel):
        zoo.info("no-such-model")
    assert {f.stage for f in plugins.failures if f.plugin == "broken"} == {"resolve_model", "resolve_weights"}


# -- 10. the results store keeps finished work --------------------------------------------------------------


def test_video_frames_over_the_pixel_limit_are_refused_before_decoding(tmp_path, qwen2vl_tiny, monkeypatch):
    clip = write_video(tmp_path / "clip.mp4", black(8))
    monkeypatch.setenv("ZOO_MAX_IMAGE_PIXELS", "100")
    message = "32x32 is larger than zoo's limit of 100 pixels for a video frame"
    with pytest.raises(zoo.BadInput, match=message):
        zoo.load("qwen2-vl-2b-instruct", weights=qwen2vl_tiny).describe(clip)
    zoo.run("vit-cifar", clip, task="classify", out=tmp_path / "frames.jsonl")  # an image model reads its frames
    assert message in json.loads((tmp_path / "frames.jsonl").read_text())["error"]



def test_videos_are_read_by_zoo_whatever_video_library_is_installed(tmp_path, qwen2vl_tiny, monkeypatch):
    """qwen-vl-utils prefers decord (or torchcodec) when it is installed: zoo's checks hold only if its reader runs."""
    fake = tmp_path / "site" / "decord"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("used = []\n\ndef VideoReader(*args, **kwargs):\n    used.append(args)\n"
                                      "    raise RuntimeError('decord read the video')\n")
    monkeypatch.syspath_prepend(tmp_path / "site")
    monkeypatch.setenv("ZOO_MAX_IMAGE_PIXELS", "100")
    with pytest.raises(zoo.BadInput, match="larger than zoo's limit of 100 pixels for a video frame"):
        zoo.load("qwen2-vl-2b-instruct", weights=qwen2vl_tiny).describe(write_video(tmp_path / "clip.mp4", black(8)))
    decord = sys.modules.pop("decord", None)
    assert decord is None or decord.used == []

@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"this is not a database" * 100), "cannot be used"),
    (lambda p: p.mkdir(), "cannot be used"),
    (lambda p: sqlite3.connect(p).execute("PRAGMA user_version = 99"), "newer than this zoo"),
])
def test_a_bad_results_database_fails_before_the_work(tmp_path, make, message, monkeypatch):
    db = tmp_path / "results.db"
    make(db)
    loaded = []
    monkeypatch.setattr(zoo.api, "load", lambda *a, **k: loaded.append(a))
    with pytest.raises(zoo.ZooError, match=message):
        bench.compare(["vit-cifar"], dataset="cifar10-sample", limit=4, db=db)
    assert loaded == []


def test_a_row_the_database_refuses_after_the_work_is_kept_in_a_file(tmp_path, monkeypatch):
    def broken(path=None):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(results.sqlite3, "connect", broken)
    with pytest.raises(zoo.ZooError, match="kept in .*unsaved-result-r1-vit-cifar.json"):
        results.save_row({"run_id": "r1", "model": "vit-cifar", "top1": 0.5})
    assert json.loads(next(Path(os.environ["ZOO_HOME"]).glob("unsaved-result-*.json")).read_text())["top1"] == 0.5


# -- 12. outputs never clobber each other or escape ZOO_HOME ---------------------------------------------


def test_drawings_of_same_named_inputs_do_not_overwrite(tmp_path, samples):
    from zoo.drawing import Drawer

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.open(samples / "cat.png").save(tmp_path / folder / "cat.png")
    swapped = [zoo.Detection((20.0, 20.0, 4.0, 4.0), "猫 café", 0.9)]  # corners a model gave the other way round
    drawer = Drawer(tmp_path / "out")
    written = [drawer.draw(tmp_path / "a" / "cat.png", []), drawer.draw(tmp_path / "b" / "cat.png", swapped)]
    frame = Image.new("RGB", (8, 8))
    written += [drawer.draw(frame, [], f"{tmp_path}/clip.mp4#t={t}") for t in ("0.000", "0.500")] + [drawer.draw(frame, [])]
    assert [p.name for p in written] == ["cat.boxes.png", "cat-2.boxes.png", "clip-t0.000.boxes.png",
                                         "clip-t0.500.boxes.png", "image4.boxes.png"]
    assert np.asarray(Image.open(written[1]))[4, 10].tolist() == [255, 0, 0]  # the box's top edge


def test_probe_names_and_alias_clashes():
    for name in ("..", "../escape", "a/b", ".hidden"):
        with pytest.raises(zoo.ZooError, match="--name"):
            probe.probe("vit-cifar", dataset="cifar10-sample", name=name)
    with pytest.raises(zoo.InvalidRecord, match="already an alias of 'vit-cifar'"):
        zoo.register({"name": "vit_cifar10", "plugin": "vit_cifar", "architecture": "vit"})


# -- 13. deltas compare like with like ------------------------------------------------------------------------


def test_results_deltas_survive_last_and_compare_same_sized_runs(tmp_path):
    db = tmp_path / "r.db"
    base = {"model": "m", "dataset": "d", "split": "test", "seed": 0, "protocol": "head", "status": "ok"}
    for run, n, top1 in (("r1", 100, 0.5), ("r2", 1000, 0.7), ("r3", 100, 0.6)):
        results.save_row({**base, "run_id": run, "n": n, "top1": top1}, db)
    rows = results.query(db, last=1)
    assert [r["run_id"] for r in rows] == ["r3"] and rows[0]["delta_top1"] == pytest.approx(0.1)
    assert results.query(db)[1]["delta_top1"] is None  # the only run of 1000 images


# -- badly handled classes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable safetensors"), (b"\x00" * 5, "not a readable safetensors"),
    (b"\xff" * 8 + b"{garbage", "not a readable safetensors"),
    ((2**40).to_bytes(8, "little") + b"{}", "not a readable safetensors"),  # a header claiming a terabyte
])
def test_damaged_safetensors_are_one_clear_error(tmp_path, content, message):
    (tmp_path / "model.safetensors").write_bytes(content)
    with pytest.raises(zoo.UnsafeWeights, match=message):
        zoo.load("vit-cifar", weights=tmp_path / "model.safetensors")


def test_truncated_safetensors(tmp_path):
    good = (zoo.load("vit-cifar").weights_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(good[: len(good) // 2])
    with pytest.raises(zoo.UnsafeWeights, match="truncated or damaged"):
        zoo.load("vit-cifar", weights=tmp_path / "model.safetensors")


def test_weights_for_another_network_name_the_keys(tmp_path):
    state = {"stray.weight": torch.zeros(2)}
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(zoo.ZooError, match=r"missing: .* \.\.\.; unexpected: stray.weight\). They are probably"):
        zoo.load("vit-cifar", weights=tmp_path / "model.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(zoo.MissingWeights, match="No weights file"):
        zoo.load("vit-cifar", weights=tmp_path / "empty")
    with pytest.raises(zoo.BadInput, match="holds a NUL byte"):
        zoo.load("vit-cifar", weights=f"{tmp_path}/\x00")
    with pytest.raises(zoo.BadInput, match="holds a NUL byte"):
        zoo.run("vit-cifar", tmp_path, task="classify", out=f"{tmp_path}/out\x00.jsonl")


def test_paths_no_file_system_takes_are_one_line_or_an_error_row(tmp_path, samples):
    long, odd = tmp_path / ("x" * 300), str(tmp_path / "\ud800.png")  # too long; a lone surrogate cannot be encoded
    for call in (lambda: zoo.load("vit-cifar", weights=long), lambda: zoo.run("vit-cifar", samples, task="classify",
                 out=f"{long}.jsonl"), lambda: zoo.load("vit-cifar").classify(f"{long}.png")):
        with pytest.raises(zoo.BadInput, match="not a usable path: longer than the file system allows"):
            call()
    with pytest.raises(zoo.BadInput, match="not a usable path: it holds characters file names cannot"):
        zoo.load("vit-cifar").classify(odd)
    (tmp_path / "list.txt").write_text(f"{samples / 'cat.png'}\n{long}.png\n{long}/*.png\n", encoding="utf-8")
    summary = zoo.run("vit-cifar", tmp_path / "list.txt", task="classify", out=tmp_path / "out.jsonl")
    errors = [json.loads(line)["error"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert (summary.done, summary.failed) == (1, 2) and errors[0] is None
    assert all("longer than the file system allows" in e for e in errors[1:])


@pytest.mark.parametrize("config, message", [
    ("{not json", "config.json is not a readable run config"),
    ("[1, 2]", r"expected a JSON object \(run config\), found list"),
    ('{"model_args": 3}', "expected a JSON object whose model_args is an object"),
    ('{"model_args": {"depth": "deep"}}', "cannot build vit from .*'depth': 'deep'.* Check the model_args in .*config.json"),
])
def test_a_damaged_run_config_is_one_line(tmp_path, config, message):
    shutil.copy(zoo.load("vit-cifar").weights_path / "model.safetensors", tmp_path)
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(zoo.BadInput, match=message):
        zoo.load("vit-cifar", weights=tmp_path)


@pytest.mark.parametrize("text, message", [
    ("- {name: x, plugin: vit_cifar, architecture: vit, params: .inf}", "positive, finite"),
    ("- {name: x, plugin: vit_cifar, architecture: vit, weights: {path: x, sha256: "
     "1234567890123456789012345678901234567890123456789012345678901234}}", "put the 64 hex digits in quotes"),
])
def test_yaml_numbers_that_are_not_what_they_seem(registry_file, text, message):
    registry_file(text)
    with pytest.raises(zoo.InvalidRecord, match=message):
        zoo.list_models()


def test_a_yaml_bomb_is_refused_and_aliases_still_work(registry_file, tmp_path):
    """Nine aliases nine deep expand to 9**9 values: 'zoo info' walking them hung; now the file is refused."""
    levels = ['  - &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]'] + \
        [f"  - &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = ("models:\n  - {name: bomb, plugin: timm, architecture: deit_tiny_patch16_224, tasks: [embed], "
            "model_args: {depth: 1, extra: &top [\n" + ",\n".join(line[4:] for line in levels) + "]}}\n")
    registry_file(bomb)
    started = time.perf_counter()
    with pytest.raises(zoo.ZooError, match="more than 100,000 values once its aliases"):
        zoo.info("bomb")
    assert time.perf_counter() - started < 5
    registry_file("models:\n  - {name: a, plugin: timm, architecture: deit_tiny_patch16_224, tasks: [embed], "
                  "model_args: &args {depth: 1}}\n  - {name: b, plugin: timm, architecture: deit_tiny_patch16_224, "
                  "tasks: [embed], model_args: *args}\n")
    assert zoo.info("b").model_args == {"depth": 1}  # an alias used as aliases are meant to be
    (tmp_path / "zoo-home").mkdir(exist_ok=True)
    (tmp_path / "zoo-home" / "config.yaml").write_text("allowed_licenses: &l [mit, *l]\n")  # a list in itself
    with pytest.raises(zoo.ZooError, match="config.yaml: more than 100,000 values"):
        zoo.load("vit-cifar")


def test_a_misspelt_top_level_key_in_a_registry_is_an_error(registry_file):
    registry_file("model:\n  - {name: a, plugin: timm, architecture: deit_tiny_patch16_224, tasks: [embed]}\n")
    with pytest.raises(zoo.ZooError, match="unknown key 'model' at the top"):  # it added no model, silently
        zoo.list_models()


def test_registry_and_home_paths_of_the_wrong_kind(tmp_path, monkeypatch):
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    for value, message in ((tmp_path / "binary.yaml", "not a text file"), (tmp_path, "is a folder")):
        monkeypatch.setenv("ZOO_REGISTRY", str(value))
        registry.reset()
        with pytest.raises(zoo.ZooError, match=message):
            zoo.list_models()
    monkeypatch.delenv("ZOO_REGISTRY")
    (tmp_path / "home-file").write_text("")
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home-file"))
    registry.reset()
    with pytest.raises(zoo.ZooError, match="is a file"):
        zoo.list_models()


def test_damaged_training_checkpoint(cifar_root, tmp_path):
    from zoo_vit_cifar.train import train

    train("cpu", data_root=cifar_root, out=tmp_path, progress=False, epochs=1, batch_size=20, test_limit=20)
    checkpoint = tmp_path / "checkpoint.safetensors"
    checkpoint.write_bytes(checkpoint.read_bytes()[:-100])
    with pytest.raises(zoo.ZooError, match="is damaged"):
        train("cpu", data_root=cifar_root, out=tmp_path, resume=True, progress=False, epochs=1, batch_size=20,
              test_limit=20)


def black(count, size=32):
    return [np.zeros((size, size, 3), np.uint8)] * count


def damaged_videos(folder):
    """{file: what zoo says of it}: videos as they come from the wild, each damaged one way."""
    named = write_video(folder / "named.mp4", black(8), title="TITLE!")  # a title that is not UTF-8 must not stop it
    named.write_bytes(named.read_bytes().replace(b"TITLE!", b"\xd0\xff\xfe\xd0\xff\xfe"))
    codec = write_video(folder / "codec.avi", black(8))  # a codec tag no decoder answers to
    codec.write_bytes(codec.read_bytes().replace(b"FMP4", b"ZZZZ"))
    with av.open(str(folder / "sound.mp4"), "w") as container:  # audio alone
        stream = container.add_stream("aac", rate=8000)
        for i in range(4):
            sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            sound.sample_rate, sound.pts = 8000, 1024 * i
            container.mux(stream.encode(sound))
        container.mux(stream.encode(None))
    return {named: None, codec: "no decoder for its video stream", folder / "sound.mp4": "has no video stream"}


def test_damaged_videos_are_one_line_or_an_error_row(tmp_path, qwen2vl_tiny):
    model = zoo.load("qwen2-vl-2b-instruct", weights=qwen2vl_tiny, min_pixels=3136, max_pixels=12544)
    damaged = damaged_videos(tmp_path)
    for path, message in damaged.items():
        if message is None:
            assert model.describe(path, max_new_tokens=2)
            continue
        with pytest.raises(zoo.BadInput, match=message):
            model.describe(path)
    zoo.run("vit-cifar", tmp_path, task="classify", out=tmp_path / "rows.jsonl")  # image models read the frames
    rows = {row["input"]: row["error"] for row in map(json.loads, (tmp_path / "rows.jsonl").read_text().splitlines())}
    assert [error for name, error in rows.items() if "named.mp4#t=" in name] == [None]  # 1 s, read at 1 fps
    for path, message in damaged.items():
        assert message is None or message in rows[str(path)]


def test_outputs_never_replace_a_device_or_pipe_and_write_through_links(tmp_path, samples):
    """A rename onto /dev/null would replace the device with a file (as root): zoo refuses, whatever writes."""
    os.mkfifo(tmp_path / "pipe.csv")
    model = zoo.load("vit-cifar")
    for write in (lambda: zoo.run(model, samples, task="classify", out=tmp_path / "pipe.csv"),
                  lambda: results.export([], "csv", tmp_path / "pipe.csv"),
                  lambda: bench.compare("vit-cifar", dataset="cifar10-sample", limit=2, db=tmp_path / "pipe.csv")):
        with pytest.raises(zoo.ZooError, match="pipe.csv is a device, pipe or socket, not a file: name a file"):
            write()
        assert (tmp_path / "pipe.csv").is_fifo() and os.listdir(tmp_path) == ["pipe.csv"]
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "target.jsonl")  # a link to a file not written yet
    zoo.run(model, samples, task="classify", out=tmp_path / "link.jsonl")
    assert (tmp_path / "link.jsonl").is_symlink() and len((tmp_path / "target.jsonl").read_text().splitlines()) == 10


def test_pipes_are_never_opened(tmp_path, samples):
    """Opening a named pipe waits for a writer, forever: folders skip them, a path to one is one line."""
    shutil.copy(samples / "cat.png", tmp_path)
    for name in ("pipe.png", "pipe.mp4", "pipe.txt"):
        os.mkfifo(tmp_path / name)
    model = zoo.load("vit-cifar")
    assert [item.key for item in Sources().items(tmp_path)] == [str(tmp_path / "cat.png")]
    with pytest.raises(zoo.BadInput, match="pipe.png is not a regular file .*: pass an image file"):
        model.classify(tmp_path / "pipe.png")
    with pytest.raises(zoo.BadInput, match="pipe.txt is not a regular file .*: pass a list file"):
        list(Sources().items(tmp_path / "pipe.txt"))
    zoo.run(model, tmp_path / "pipe.mp4", task="classify", out=tmp_path / "rows.jsonl")
    assert "is not a regular file" in json.loads((tmp_path / "rows.jsonl").read_text())["error"]


def test_frames_larger_than_the_header_said_are_refused(tmp_path, monkeypatch):
    """A stream can change size mid-way: the pixel limit holds for every frame, not only the header's size."""
    small = write_video(tmp_path / "small.m4v", black(8), format="m4v")  # a raw stream: two can be joined
    large = write_video(tmp_path / "large.m4v", black(8, 96), start=8, format="m4v")
    (tmp_path / "grows.m4v").write_bytes(small.read_bytes() + large.read_bytes())
    monkeypatch.setenv("ZOO_MAX_IMAGE_PIXELS", str(64 * 64))
    values = [item.value for item in frames(tmp_path / "grows.m4v", 8.0)]
    assert len(values) == 9 and not any(isinstance(value, Failed) for value in values[:8])
    assert "96x96 is larger than zoo's limit of 4096 pixels" in values[8].error


def test_a_thin_strip_is_refused_before_its_resize_grows_it(tmp_path, monkeypatch, samples):
    """A 2000x1 image is small, but resizing its short edge to the model's input makes it 2000 times larger: a
    strip of a few kilobytes would become gigabytes. The pixel limit holds for the resized image too."""
    monkeypatch.setenv("ZOO_MAX_IMAGE_PIXELS", "10000")
    Image.new("RGB", (2000, 1)).save(tmp_path / "strip.png")
    model = zoo.load("vit-cifar")
    with pytest.raises(zoo.BadInput, match=r"\(2000x1\) is too thin for this model: .* to 64000x32, over zoo's limit"):
        model.classify(tmp_path / "strip.png")
    zoo.run("vit-cifar", [tmp_path / "strip.png", samples / "cat.png"], task="classify", out=tmp_path / "rows.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert "too thin" in rows[0]["error"] and rows[1]["error"] is None


def test_videos_that_are_not_videos(tmp_path, qwen2vl_tiny):
    model = zoo.load("qwen2-vl-2b-instruct", weights=qwen2vl_tiny, min_pixels=3136, max_pixels=12544)
    one = write_video(tmp_path / "one.mp4", black(1))
    with pytest.raises(zoo.BadInput, match="has 1 video frame"):
        model.describe(one)
    (tmp_path / "text.mp4").write_text("hello")
    with pytest.raises(zoo.BadInput, match="not a readable video"):
        model.describe(tmp_path / "text.mp4")


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "is a folder, not an image"),
    (lambda p: " ", "empty string is not an image path"),
    (lambda p: "cat\x00.png", "not a usable path: it holds a NUL byte"),  # Python's ValueError read as a bug
    (lambda p: "x" * 5000 + ".png", "not a usable path"),
    (lambda p: np.zeros((0, 0, 3), np.uint8), "empty"),
    (lambda p: torch.zeros(3, 0, 5), "empty"),
    (lambda p: torch.empty(3, 4, 4, device="meta"), "meta tensor"),
    (lambda p: torch.rand(3, 4, 4).to_sparse(), "must be dense; got a torch.sparse_coo tensor"),
    (lambda p: Image.new("RGB", (0, 0)), "empty"),
])
def test_inputs_that_are_no_images_raise_zoo_errors(tmp_path, make, message):
    with pytest.raises(zoo.BadInput, match=message):
        load_image(make(tmp_path))


def test_truncated_and_oversized_images(tmp_path, samples, monkeypatch):
    buffer = io.BytesIO()
    Image.open(samples / "cat.png").save(buffer, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(zoo.BadInput, match="not a readable image"):
        load_image(tmp_path / "cut.jpg")
    monkeypatch.setenv("ZOO_MAX_IMAGE_PIXELS", "100")
    with pytest.raises(zoo.BadInput, match="larger than zoo's limit of 100 pixels"):
        load_image(samples / "cat.png")  # 32x32


def test_misleading_messages_are_gone():
    assert "Did you mean: vit-cifar," in str(pytest.raises(zoo.UnknownModel, zoo.info, "vit-cifarr").value)
    assert zoo.UnknownModel("x", ["x", "xy"]).matches == ["xy"]  # never suggests the name itself
    assert str(zoo.UnknownModel("q" * 5000)).startswith(f"Unknown model '{'q' * 80}'... (5000 characters). Run")
    for name in (5, None, ["vit-cifar"], b"vit-cifar"):
        with pytest.raises(zoo.BadInput, match="A model name is text"):
            zoo.load(name)
    many = zoo.UnsupportedCapability("m", "classify", [f"model-{i}" for i in range(12)])
    assert str(many).endswith("model-7 and 4 more ('zoo list --task classify').")


def test_a_head_without_labels_says_so(registry_file, tmp_path):
    import timm

    module = timm.create_model("test_vit.r160_in1k", num_classes=7)
    save_file(module.state_dict(), str(tmp_path / "m.safetensors"))
    registry_file(f"- {{name: unlabelled, plugin: timm, architecture: test_vit, model_args: {{num_classes: 7}}, "
                  f"weights: {{path: '{tmp_path / 'm.safetensors'}'}}}}")
    with pytest.raises(zoo.UnsupportedCapability, match="head has 7 classes but its record names no labels"):
        zoo.load("unlabelled").classify(np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize("value", ["abc", "0", "-1", "1e3", "nan", "inf"])
def test_numeric_settings_that_are_not_numbers_are_one_line_before_any_work(monkeypatch, samples, tmp_path, value):
    model = zoo.load("vit-cifar")
    monkeypatch.setenv("ZOO_MAX_IMAGE_PIXELS", value)
    with pytest.raises(zoo.ZooError, match=f"ZOO_MAX_IMAGE_PIXELS='{value}': use a whole number above 0"):
        zoo.load("vit-cifar")
    with pytest.raises(zoo.ZooError, match="ZOO_MAX_IMAGE_PIXELS"):  # set after loading: the run stops, one line,
        zoo.run(model, samples, task="classify", out=tmp_path / "rows.jsonl")  # not an error row per input
    monkeypatch.delenv("ZOO_MAX_IMAGE_PIXELS")
    for name in ("ZOO_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("ZOO_HUB_TIMEOUT", value)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    if value != "1e3":  # a fine number of seconds
        with pytest.raises(zoo.ZooError, match=f"ZOO_HUB_TIMEOUT='{value}': use a number above 0"):
            zoo.load("deit-tiny")


def test_an_unreachable_hub_is_one_line_and_quick(monkeypatch):
    import huggingface_hub.constants

    for name in ("ZOO_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    started = time.perf_counter()
    with pytest.raises(zoo.MissingWeights) as caught:
        zoo.load("deit-tiny")
    message = str(caught.value)
    assert "\n" not in message and "Pass weights=PATH, or set ZOO_OFFLINE=1" in message
    assert time.perf_counter() - started < 15


def lock_entry(folder, files=None, **fields):
    files = files or {"w.safetensors": {"sha256": "a" * 64, "size": 1}}
    return {"source": "url:http://127.0.0.1:9/w.safetensors", "revision": None, "commit": "a" * 64, "files": files,
            "folder": str(folder), "mtimes": {}, "pulled": "2020-01-01T00:00:00+00:00",
            "last_used": "2020-01-01T00:00:00+00:00", **fields}


def test_a_lock_never_makes_zoo_delete_or_read_files_outside_its_caches(tmp_path):
    from zoo import lock

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    run = lambda *args: CliRunner().invoke(build_cli(), [str(a) for a in args])  # noqa: E731
    team = tmp_path / "team.lock"
    for files, problem in [({"../../etc/passwd": {"sha256": "a" * 64, "size": 1}}, "outside its snapshot"),
                           ({"/etc/passwd": {"sha256": "a" * 64, "size": 1}}, "outside its snapshot"),
                           ({"w.bin": {"sha256": "nope", "size": 1}}, "no sha256 and size")]:
        team.write_text(json.dumps({"version": 1, "models": {"evil": lock_entry(precious, files)}}))
        result = run("lock", "import", team)
        assert result.exit_code == 1 and problem in result.output and len(result.output.splitlines()) == 1
    team.write_text(json.dumps({"version": 1, "models": {"evil": lock_entry(precious)}}))
    assert run("lock", "import", team).exit_code == 0 and "folder" not in lock.entry("evil")  # a pin, no path
    assert run("cache", "rm", "evil").exit_code == 0
    lock.update(lambda models: models.__setitem__("edited", lock_entry(precious)))  # a hand-edited lock
    assert run("cache", "rm", "--older-than", "0").exit_code == 0 and lock.read()["models"] == {}
    assert (precious / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("fields, problem", [
    ({"folder": 5}, "names its folder with something other than a path"),
    ({"mtimes": {"w.safetensors": "soon"}}, "has file times that are not whole numbers"),
    ({"last_used": "2026-13-99"}, "has a last_used time that is not an ISO date"),
    ({"pulled": "2026-01-01"}, "has a pulled time that is not an ISO date with its time zone"),  # naive: not comparable
])
def test_a_hand_edited_lock_is_one_line_naming_the_entry(tmp_path, fields, problem):
    (tmp_path / "zoo-home").mkdir(exist_ok=True)
    (tmp_path / "zoo-home" / "zoo.lock").write_text(json.dumps({"version": 1, "models": {
        "edited": {**lock_entry(tmp_path), **fields}}}))
    for args in (["cache", "ls"], ["cache", "rm", "--older-than", "1"]):
        result = CliRunner().invoke(build_cli(), args)
        assert result.exit_code == 1 and f"entry 'edited' {problem}" in result.output, result.output


# -- the CLI: a table of bad invocations, each one line and an exit code, never a traceback ------------------


S = str(ROOT / "samples" / "cat.png")
LONG = "x" * 300  # a file name longer than file systems allow
BAD_CLI = [
    (["classify", "vit-cifar", "https://example.com/cat.png"], 1, "need the network"),
    (["classify", "vit-cifar", str(ROOT / "samples" / "nothing-here")], 1, "Image file not found"),
    (["classify", "vit-cifar", S, "--weights", "/nonexistent"], 1, "does not exist"),
    (["classify", "vit-cifar", S, "--device", "cuda:99"], 1, "device='cuda:99' but this machine has"),
    (["describe", "florence-2-base", S, "--max-new-tokens", "0"], 2, "x>=1"),
    (["eval", "vit-cifar", "--dataset", "cifar10", "--data-root", "/nonexistent"], 1, "CIFAR-10 not found"),
    (["train", "vit-cifar", "--data-root", ".", "--test-limit", "0"], 2, "x>=1"),
    (["probe", "vit-cifar", "--dataset", "cifar10-sample", "--name", ".."], 1, "--name"),
    (["bench", "vit-cifar", "--dataset", "cifar10-sample", "--limit", "4", "--plot", "/dev/null/x.png"], 1,
     "Cannot write"),
    (["results", "--export", "csv", "/dev/null/x.csv"], 1, "Cannot write"),
    (["embed", "vit-cifar", S, "--out", "/dev/null/x.npy"], 1, "Cannot write"),
    (["info", "vit-cifarr"], 1, "Did you mean"),
    *[(args, code, "not a usable path: longer than the file system allows") for code, args in (  # OSError: a bug?
        (1, ["classify", "vit-cifar", LONG + ".png"]),
        (1, ["classify", "vit-cifar", f"/tmp/{LONG}/*.png"]),
        (1, ["eval", "vit-cifar", "--dataset", f"/tmp/{LONG}"]),
        (2, ["embed", "vit-cifar", S, "--out", f"/tmp/{LONG}.npy"]),  # path options: usage errors
        (2, ["classify", "vit-cifar", S, "--weights", f"/tmp/{LONG}"]),
        (2, ["train", "vit-cifar", "--data-root", f"/tmp/{LONG}"]),
        (2, ["bench", "vit-cifar", "--dataset", "cifar10-sample", "--limit", "4", "--plot", f"/tmp/{LONG}.png"]))],
    *[(args, 2, "not a usable path: it holds a NUL byte") for args in (  # click.Path raised ValueError
        ["results", "--export", "csv", "a\x00b"], ["lock", "import", "a\x00b"], ["probe", "vit-cifar", "--data-root", "\x00"])],
    (["lock", "import", "/nonexistent"], 1, "Lock file not found: /nonexistent"),
    (["results", "out.csv"], 1, "results are written to a file with --export FORMAT"),  # was silently ignored
    (["classify", "vit-cifar", S, "--resume"], 1, "--resume applies to a bulk run into a file: add --out"),
    (["classify", "vit-cifar", S, "--engine", "ray"], 1, "--engine applies to a bulk run into a file"),
    (["classify", "vit-cifar", S, "--json", "--out", "/nonexistent/x.jsonl"], 1, "--json shapes results printed here"),
    (["detect", "florence-2-base", S, "--draw", "d", "--out", "/nonexistent/x.jsonl"], 1, "--draw shapes results"),
    (["describe", "florence-2-base", S, "--no-stream", "--out", "/nonexistent/x.jsonl"], 1, "--stream shapes results"),
]


@pytest.mark.parametrize("args, code, message", BAD_CLI, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_invocations_are_one_line_and_an_exit_code(args, code, message):
    result = CliRunner().invoke(build_cli(), args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == code and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("Error: ") and message in lines[0]


def test_file_names_cannot_drive_the_terminal(tmp_path, samples):
    """A newline or an escape sequence in a file name is printed escaped, as `ls -b` shows it: it neither breaks
    the table nor reaches the terminal (where it could retitle the window, or hide or fake lines)."""
    (tmp_path / "a\nb.png").write_bytes((samples / "cat.png").read_bytes())
    (tmp_path / "\x1b]0;owned\x07.png").write_bytes(b"not an image")
    result = CliRunner().invoke(build_cli(), ["classify", "vit-cifar", str(tmp_path), "--top-k", "1"])
    assert result.exit_code == 1 and "\x1b" not in result.output and "\x07" not in result.output
    assert result.stdout.splitlines()[1].split()[:3] == [f"{tmp_path}/a\\nb.png", "1", "cat"]
    assert "\\x1b]0;owned\\x07.png is not a readable image" in result.stderr


@pytest.mark.parametrize("name, message", [("list.txt", "not a readable list of paths"),
                                           ("manifest.csv", "not a readable CSV manifest"),
                                           ("manifest.parquet", "not a readable PARQUET manifest")])
def test_unreadable_lists_and_manifests_are_one_line(tmp_path, name, message):
    (tmp_path / name).write_bytes(bytes(range(128, 256)) * 4)
    for extra in ([], ["--out", str(tmp_path / "out.jsonl")]):
        result = CliRunner().invoke(build_cli(), ["classify", "vit-cifar", str(tmp_path / name), *extra])
        assert result.exit_code == 1 and result.output.count("\n") == 1 and message in result.output, result.output


def test_a_list_damaged_near_its_end_is_refused_before_any_input_runs(tmp_path, samples):
    """Lists and manifests are read lazily during the run, after one pass that checks them whole."""
    (tmp_path / "late.txt").write_bytes(f"{samples / 'cat.png'}\n".encode() * 1000 + b"\xff\xfe\n")
    (tmp_path / "late.csv").write_bytes(f"path\n{samples / 'cat.png'}\n".encode() + b'"x' * 70000 + b'\n')
    for name, message in (("late.txt", "late.txt: not a readable list of paths ('utf-8' codec can't decode"),
                          ("late.csv", "late.csv: not a readable CSV manifest (field larger than field limit")):
        with pytest.raises(zoo.BadInput, match=re.escape(message)):
            zoo.run("vit-cifar", tmp_path / name, task="classify", out=tmp_path / "rows.jsonl")
        assert not (tmp_path / "rows.jsonl").exists() and not (tmp_path / "rows.jsonl.parts").exists()


def test_a_list_without_line_breaks_is_refused_not_read_into_memory(tmp_path, monkeypatch):
    from zoo import sources

    monkeypatch.setattr(sources, "MAX_LINE", 1000)  # 1 MiB in use; a file of gigabytes with no break is the threat
    line = b"a" * 5000
    for name in ("one-line.txt", "one-line.csv"):
        (tmp_path / name).write_bytes(b"path\n" + line if name.endswith(".csv") else line)
        with pytest.raises(zoo.BadInput, match=f"{name}: a line longer than 1,000 characters; lists and manifests"):
            zoo.run("vit-cifar", tmp_path / name, task="classify", out=tmp_path / "rows.jsonl")
    result = CliRunner().invoke(build_cli(), ["classify", "vit-cifar", "-", "--out", str(tmp_path / "r.jsonl")],
                                input=line)
    assert (result.exit_code, result.output) == (1, "Error: standard input: a line longer than 1,000 characters; "
                                                    "lists and manifests name one input a line.\n")


def test_a_list_naming_itself_and_a_broken_video_are_one_line(tmp_path):
    (tmp_path / "self.txt").write_text("self.txt\n")
    (tmp_path / "clip.mp4").write_bytes(b"not a video")
    for name, message in [("self.txt", "self.txt names self.txt, another list"), ("clip.mp4", "not a readable video")]:
        result = CliRunner().invoke(build_cli(), ["classify", "vit-cifar", str(tmp_path / name)])
        assert result.exit_code == 1 and result.output.count("\n") == 1 and message in result.output, result.output


def test_a_failed_command_keeps_the_files_it_would_have_written(tmp_path):
    folder = tmp_path / "outputs"
    folder.mkdir()
    plot, out = folder / "bench.png", folder / "feats.npy"
    plot.write_bytes(b"an earlier plot")
    out.write_bytes(b"earlier vectors")
    failing = [["bench", "vit-cifar", "--dataset", "cifar10", "--data-root", str(tmp_path / "none"), "--plot", str(plot)],
               ["embed", "vit-cifar", S, "--out", str(out), "-o", "bogus=1"]]
    for args in failing:
        assert CliRunner().invoke(build_cli(), args).exit_code == 1
    assert plot.read_bytes() == b"an earlier plot" and out.read_bytes() == b"earlier vectors"
    assert sorted(p.name for p in folder.iterdir()) == ["bench.png", "feats.npy"]  # no temporary files left


def test_an_unexpected_error_is_one_line_with_a_debug_hint(monkeypatch):
    monkeypatch.setattr(zoo.api, "load", lambda *a, **k: 1 / 0)
    result = CliRunner().invoke(build_cli(), ["classify", "vit-cifar", S])
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "Error: unexpected ZeroDivisionError: division by zero (a bug in zoo or a plugin: please report it; "
        "ZOO_DEBUG=1 shows the traceback)"]


def test_a_full_disk_is_the_systems_words_not_a_bug(tmp_path, monkeypatch):
    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs, "WRITE", {**outputs.WRITE, ".jsonl": full})
    result = CliRunner().invoke(build_cli(), ["classify", "vit-cifar", S, "--out", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 1 and result.output.strip().splitlines() == ["Error: No space left on device."]
    monkeypatch.setattr(zoo.api, "load", lambda *a, **k: open(tmp_path))  # an OSError that names its file
    result = CliRunner().invoke(build_cli(), ["classify", "vit-cifar", S])
    assert result.output.strip().splitlines() == [f"Error: {tmp_path}: Is a directory."]


def test_saved_files_get_the_usual_permissions(tmp_path):
    from zoo.files import atomic_path

    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "model.safetensors") as tmp:  # safetensors replaces the file it writes
            save_file({"w": torch.zeros(1)}, str(tmp))
    finally:
        os.umask(umask)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o644


def test_labels_that_do_not_fit_the_head_say_so(registry_file):
    @zoo.register_model("three-labels-two-scores", labels=["a", "b", "c"], override=True)
    def build():
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(2))

    with pytest.raises(zoo.ZooError, match="gives 2 scores an image but its record names 3 labels"):
        zoo.load("three-labels-two-scores").classify(np.zeros((8, 8, 3), np.uint8))
    for labels in ("[a, a]", "[a, ' ']", "[]"):
        registry_file(f"- {{name: doubled, plugin: vit_cifar, architecture: vit, labels: {labels}}}")
        with pytest.raises(zoo.InvalidRecord, match="expected distinct, non-empty label names"):
            zoo.list_models()


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "config.json").write_text("{"), "config.json is not a readable probe config"),
    (lambda f: (f / "config.json").write_text('{"labels": 5}'), "expected 'labels', a list of names"),
    (lambda f: (f / "config.json").unlink(), "config.json is not a readable probe config (No such file"),
    (lambda f: (f / "head.safetensors").write_bytes(b"x"), "head.safetensors is not a readable safetensors file"),
    (lambda f: save_file({"weight": torch.zeros(3, 128)}, str(f / "head.safetensors")),
     "does not hold a linear head for 10 labels"),
    (lambda f: save_file({"weight": torch.zeros(10, 64), "bias": torch.zeros(10), "mean": torch.zeros(64),
                          "std": torch.ones(64)}, str(f / "head.safetensors")),
     "its head takes 64 features but vit-cifar gives 256: it was trained on another backbone"),
])
def test_a_damaged_probe_folder_is_one_line(damage, message):
    folder = Path(probe.probe("vit-cifar", dataset="cifar10-sample", epochs=1, limit=20, test_limit=10)["path"])
    damage(folder)
    with pytest.raises(zoo.ZooError, match=re.escape(message)):
        zoo.load("vit-cifar+cifar10-sample").classify(np.zeros((32, 32, 3), np.uint8))
