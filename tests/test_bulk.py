"""Bulk inference: every input and output kind, error rows, kill-and-resume, video frames, the Ray engine."""

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image
from safetensors import safe_open

import zoo
from localhub import Hub
from zoo import bulk
from zoo.cli import build_cli
from zoo.sources import Sources


@pytest.fixture
def photos(tmp_path, samples):
    """A folder of the ten sample images, two in a sub-folder, one broken file and a text file."""
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    for i, path in enumerate(sorted(samples.glob("*.png"))):
        Image.open(path).save(folder / ("more" if i < 2 else ".") / path.name)
    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored: not an image type")
    return folder


@pytest.fixture
def ray_in_this_process(subprocess_env, monkeypatch):
    """For a test that starts Ray in its own process: Ray's workers take the driver's zoo settings from its
    environment, made this test's; the cluster stops with the test (one left running took the CPU from every test
    after it, and kept the first test's settings for the next ones)."""
    ray = pytest.importorskip("ray")
    for key, value in subprocess_env.items():
        monkeypatch.setenv(key, value)
    yield
    ray.shutdown()


def rows(path):
    return pq.read_table(path).to_pylist() if str(path).endswith(".parquet") else \
        [json.loads(line) for line in open(path) if line.strip()]


def rows_of_folder(folder):
    """The rows of a ray run's folder of .json or .csv files, sorted by input; CSV cells decoded as zoo reads them."""
    from zoo.outputs import read_csv

    found = (r for f in sorted(folder.iterdir()) for r in (read_csv(f, "classify") if f.suffix == ".csv" else rows(f)))
    return sorted(found, key=lambda r: r["input"])


def same_rows(a, b):
    """Equal rows; scores to 1e-5 (a batch of another size rounds differently in the last digits)."""
    if [(r["input"], r["error"], [p["label"] for p in r["predictions"] or []]) for r in a] != \
            [(r["input"], r["error"], [p["label"] for p in r["predictions"] or []]) for r in b]:
        return False
    return all(abs(p["score"] - q["score"]) < 1e-5 for x, y in zip(a, b)
               for p, q in zip(x["predictions"] or [], y["predictions"] or []))


def test_folders_recursive_extension_filter_and_error_rows(photos, tmp_path):
    summary = zoo.run("vit-cifar", photos, task="classify", out=tmp_path / "top.jsonl")
    assert (summary.done, summary.failed) == (8, 1)  # top level only; the broken file is an error row
    found = rows(tmp_path / "top.jsonl")
    broken = next(r for r in found if r["input"].endswith("broken.png"))
    assert "not a readable image" in broken["error"] and broken["predictions"] is None
    deep = zoo.run("vit-cifar", photos, task="classify", out=tmp_path / "all.parquet", recursive=True)
    assert deep.done == 10
    only = zoo.run("vit-cifar", photos, task="classify", out=tmp_path / "cats.csv",
                   recursive=True, extensions=["png"])
    assert only.done == 10 and only.failed == 1


def test_globs_lists_and_manifests(photos, tmp_path):
    (tmp_path / "list.txt").write_text("# chosen\nphotos/cat.png\n\nphotos/dog.png\nhttps://example.com/x.png\n")
    (tmp_path / "m.csv").write_text("file,label\nphotos/cat.png,cat\nphotos/frog.png,frog\n")
    pq.write_table(pa.table({"path": [str(photos / "cat.png")]}), tmp_path / "m.parquet")
    # Excel's "CSV UTF-8" and Windows editors start the file with a byte-order mark
    (tmp_path / "bom.csv").write_text("path,label\r\nphotos/cat.png,cat\r\n", encoding="utf-8-sig")
    (tmp_path / "bom.txt").write_text("photos/cat.png\r\n", encoding="utf-8-sig")
    cases = [(str(photos / "*.png"), {}, 9), (tmp_path / "list.txt", {}, 3), (tmp_path / "m.csv", {"column": "file"}, 2),
             (tmp_path / "m.parquet", {}, 1), (tmp_path / "bom.csv", {}, 1), (tmp_path / "bom.txt", {}, 1)]
    for source, options, expected in cases:
        out = tmp_path / "out.jsonl"
        zoo.run("vit-cifar", source, task="classify", out=out, force=True, **options)
        assert len(rows(out)) == expected, source
        assert "bom" not in str(source) or rows(out)[0]["error"] is None
    zoo.run("vit-cifar", tmp_path / "list.txt", task="classify", out=tmp_path / "l.jsonl")
    assert "need the network" in rows(tmp_path / "l.jsonl")[2]["error"]  # offline: an error row, not a request
    with pytest.raises(zoo.BadInput, match="no column 'path'.*pass --column"):
        zoo.run("vit-cifar", tmp_path / "m.csv", task="classify", out=out, force=True)


def test_a_pattern_matching_nothing_is_an_error_row_and_a_name_with_brackets_is_a_file(photos, tmp_path):
    shutil.copy(photos / "cat.png", tmp_path / "IMG [1].png")  # as a glob, it would match 'IMG 1.png'
    shutil.copy(photos / "dog.png", tmp_path / "IMG 1.png")
    summary = zoo.run("vit-cifar", [tmp_path / "IMG [1].png", str(photos / "*.jpeg")], task="classify",
                      out=tmp_path / "rows.jsonl")
    found = rows(tmp_path / "rows.jsonl")
    assert (summary.done, summary.failed) == (1, 1) and found[0]["input"] == str(tmp_path / "IMG [1].png")
    assert found[0]["predictions"][0]["label"] == "cat" and found[1]["error"] == f"No file matches {photos}/*.jpeg."


def test_a_parquet_manifest_of_images_as_the_hub_stores_them(photos, tmp_path, monkeypatch):
    """A Hugging Face dataset's Parquet file: each image a {bytes, path} record, named by its row; a record with
    only a path is read from there (relative to the manifest), as a manifest's paths are."""
    shutil.copy(photos / "dog.png", tmp_path / "dog.png")
    images = [{"bytes": (photos / "cat.png").read_bytes(), "path": "cat.png"}, {"bytes": None, "path": "dog.png"},
              {"bytes": b"not an image", "path": "x.png"}, None]
    pq.write_table(pa.table({"image": images, "label": [3, 5, 0, 1]}), tmp_path / "train.parquet")
    monkeypatch.chdir(photos)  # not the manifest's folder
    summary = zoo.run("vit-cifar", tmp_path / "train.parquet", task="classify", out=tmp_path / "p.jsonl",
                      column="image")
    found = rows(tmp_path / "p.jsonl")
    assert (summary.done, summary.failed) == (2, 1)
    assert [(r["input"], r["predictions"] and r["predictions"][0]["label"]) for r in found] == [
        (f"{tmp_path / 'train.parquet'}#row={i}", label) for i, label in enumerate(["cat", "dog", None])]
    assert "is not a readable image" in found[2]["error"]
    again = zoo.run("vit-cifar", tmp_path / "train.parquet", task="classify", out=tmp_path / "p.jsonl",
                    column="image", resume=True)
    assert (again.done, again.skipped) == (0, 3)
    with pytest.raises(zoo.ZooError, match=r"train.parquet#row=0 is an image the driver holds, .*read_parquet"):
        zoo.run("vit-cifar", tmp_path / "train.parquet", task="classify", out=tmp_path / "r.parquet",
                column="image", engine="ray")


@pytest.mark.parametrize("column, message", [
    (pa.array([1, 2]), "column 'path' holds int64, not paths or images"),
    (pa.array([["a.png"]]), "holds list<element: string>, not paths or images"),
])
def test_a_parquet_column_that_holds_no_paths_is_one_line(tmp_path, column, message):
    pq.write_table(pa.table({"path": column}), tmp_path / "m.parquet")
    with pytest.raises(zoo.BadInput, match=message):
        zoo.run("vit-cifar", tmp_path / "m.parquet", task="classify", out=tmp_path / "rows.jsonl")


def test_parquet_paths_as_bytes_or_categories(photos, tmp_path):
    paths = [str(photos / "cat.png"), str(photos / "dog.png")]
    pq.write_table(pa.table({"path": pa.array([p.encode() for p in paths], pa.binary())}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"path": pa.array(paths).dictionary_encode()}), tmp_path / "c.parquet")
    for name in ("b.parquet", "c.parquet"):
        zoo.run("vit-cifar", tmp_path / name, task="classify", out=tmp_path / "rows.jsonl", force=True)
        assert [r["input"] for r in rows(tmp_path / "rows.jsonl")] == paths


def test_every_output_format_holds_the_same_rows(photos, tmp_path):
    expected = None
    for suffix in (".jsonl", ".csv", ".parquet"):
        out = tmp_path / f"p{suffix}"
        zoo.run("vit-cifar", photos, task="classify", out=out)
        if suffix == ".csv":
            import csv

            rows_of = [{**r, "predictions": json.loads(r["predictions"]) if r["predictions"] else None}
                       for r in csv.DictReader(open(out))]
        else:
            rows_of = rows(out)
        labels = [(r["input"], r["predictions"][0]["label"] if r["predictions"] else None) for r in rows_of]
        expected = expected or labels
        assert labels == expected, suffix
    assert not list(tmp_path.glob("*.parts"))  # finished: the parts are gone


def test_embeddings_to_parquet_npy_and_safetensors_with_an_index(photos, tmp_path):
    zoo.run("vit-cifar", photos, task="embed", out=tmp_path / "e.parquet")
    table = pq.read_table(tmp_path / "e.parquet")
    embeddings = table.column("embedding")  # broken.png: a null in its row
    assert pa.types.is_list(embeddings.type) and embeddings.null_count == 1
    zoo.run("vit-cifar", photos / "more", task="embed", out=tmp_path / "good.parquet")  # every input worked
    assert pq.read_table(tmp_path / "good.parquet").schema.field("embedding").type == pa.list_(pa.float32(), 256)
    zoo.run("vit-cifar", photos, task="embed", out=tmp_path / "e.npy")
    index = json.loads((tmp_path / "e.index.json").read_text())
    assert np.load(tmp_path / "e.npy").shape == (8, 256) and len(index) == 9 and sum(bool(i["error"]) for i in index) == 1
    zoo.run("vit-cifar", photos, task="embed", out=tmp_path / "e.safetensors")
    with safe_open(str(tmp_path / "e.safetensors"), "np") as f:
        vectors, inputs = f.get_tensor("embeddings"), json.loads(f.metadata()["inputs"])
    good = [r for r in table.to_pylist() if not r["error"]]
    assert inputs == [r["input"] for r in good]
    assert np.allclose(vectors, np.asarray([r["embedding"] for r in good]), atol=1e-6)


def test_a_long_runs_safetensors_index_goes_beside_the_file(photos, tmp_path, monkeypatch):
    from zoo import outputs

    monkeypatch.setattr(outputs, "SAFETENSORS_METADATA_BYTES", 100)  # as a run of a million inputs would exceed it
    out = tmp_path / "e.safetensors"
    zoo.run("vit-cifar", photos, task="embed", out=out)
    with safe_open(str(out), "np") as f:
        assert f.metadata() == {"index_file": "e.index.json"} and f.get_tensor("embeddings").shape == (8, 256)
    assert len(json.loads((tmp_path / "e.index.json").read_text())) == 9
    summary = zoo.run("vit-cifar", photos, task="embed", out=out, resume=True, recursive=True)
    assert (summary.skipped, summary.done) == (9, 2)
    assert len(json.loads((tmp_path / "e.index.json").read_text())) == 11


def test_a_killed_run_resumes_to_the_same_result(photos, tmp_path, monkeypatch):
    full = tmp_path / "full.parquet"
    zoo.run("vit-cifar", photos, task="classify", out=full, recursive=True)
    monkeypatch.setattr(bulk, "CHUNK_ROWS", 3)
    real_make_row, made = bulk.make_row, []

    def dies_after_seven(*args):
        if len(made) == 7:
            raise KeyboardInterrupt  # the process is killed mid-run
        made.append(1)
        return real_make_row(*args)

    monkeypatch.setattr(bulk, "make_row", dies_after_seven)
    cut = tmp_path / "cut.parquet"
    with pytest.raises(KeyboardInterrupt):
        zoo.run("vit-cifar", photos, task="classify", out=cut, recursive=True)
    parts = sorted((tmp_path / "cut.parquet.parts").glob("*.parquet"))
    assert len(parts) == 2 and sum(pq.read_table(p).num_rows for p in parts) == 6  # readable up to the last chunk
    monkeypatch.setattr(bulk, "make_row", real_make_row)
    summary = zoo.run("vit-cifar", photos, task="classify", out=cut, resume=True, recursive=True)
    assert summary.skipped == 6 and summary.done + summary.failed == 5
    assert same_rows(pq.read_table(cut).to_pylist(), pq.read_table(full).to_pylist())


def test_zoo_run_reads_an_iterator_once_as_it_goes_and_resumes_it(samples, tmp_path):
    paths = sorted(samples.glob("*.png"))

    def dataset():  # as a dataset library yields its rows: images in memory, or paths
        for i, path in enumerate(paths):
            yield Image.open(path) if i % 2 else str(path)

    out = tmp_path / "p.jsonl"
    summary = zoo.run("vit-cifar", dataset(), task="classify", out=out)
    assert (summary.done, summary.failed) == (10, 0)
    expected = zoo.load("vit-cifar").classify(paths, top_k=1)
    assert [(r["input"], r["predictions"][0]["label"]) for r in rows(out)] == \
        [(f"input-{i}" if i % 2 else str(p), e[0].label) for i, (p, e) in enumerate(zip(paths, expected))]
    summary = zoo.run("vit-cifar", dataset(), task="classify", out=out, resume=True)
    assert (summary.done, summary.skipped) == (0, 10)
    # An empty name is an error row: Path("") is the current folder, which a blank row never means.
    zoo.run("vit-cifar", iter(["", " ", str(paths[0])]), task="classify", out=tmp_path / "e.jsonl")
    assert [r["error"] for r in rows(tmp_path / "e.jsonl")] == \
        ["An empty string is not an image path: pass a file's path."] * 2 + [None]


def test_data_uris_long_urls_and_long_paths_are_told_apart_and_resume(tmp_path):
    uris = []
    for colour in ("red", "blue"):  # JPEGs written alike share their first few hundred base64 characters
        Image.new("RGB", (32, 32), colour).save(buffer := io.BytesIO(), "JPEG")
        uris.append("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode())
    out = tmp_path / "d.jsonl"
    zoo.run("vit-cifar", uris[:1], task="classify", out=out)
    summary = zoo.run("vit-cifar", uris, task="classify", out=out, resume=True)
    assert (summary.done, summary.skipped) == (1, 1)
    keys = [r["input"] for r in rows(out)]
    assert [k.partition(",...#sha256=")[0] for k in keys] == ["data:image/jpeg;base64"] * 2 and len(set(keys)) == 2
    long = [f"https://example.com/{'x' * 300}/{i}.png" for i in range(2)]
    assert [i.key for i in Sources().items(long)] == long
    unusable = [f"/{'x' * 5000}/{i}.png" for i in range(2)]  # longer than any path: error rows, each its own key
    keys = [i.key for i in Sources().items(unusable)]
    assert len(set(keys)) == 2 and all(k.startswith("/" + "x" * 199 + "...#sha256=") for k in keys)


def test_a_dash_reads_paths_from_standard_input(samples, tmp_path):
    paths = [str(p) for p in sorted(samples.glob("*.png"))]
    listing = "\n".join(paths[:3]) + "\n# a comment\n\n"  # as find or ls write them; comments as in a list file
    result = CliRunner().invoke(build_cli(), ["classify", "vit-cifar", "-", "--json"], input=listing)
    assert [r["input"] for r in json.loads(result.output)] == paths[:3]
    out = tmp_path / "p.jsonl"
    result = CliRunner().invoke(build_cli(), ["embed", "vit-cifar", paths[3], "-", "--out", str(out)], input=listing)
    assert result.exit_code == 0 and [r["input"] for r in rows(out)] == [paths[3], *paths[:3]]
    result = CliRunner().invoke(build_cli(), ["classify", "vit-cifar", "-", "-"])
    assert (result.exit_code, result.output) == (1, "Error: '-' (standard input) can be given once.\n")


@pytest.mark.parametrize("name", ["p.jsonl", "p.csv", "p.parquet", "e.npy", "e.safetensors"])
def test_a_file_name_that_is_not_utf8_is_written_escaped_and_resumes(samples, tmp_path, name):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(samples / "cat.png", folder / os.fsdecode(b"caf\xe9.png"))  # Latin-1, as older systems name files
    (folder / os.fsdecode(b"bad\xff.png")).write_bytes(b"not an image")
    task = "embed" if name.startswith("e.") else "classify"
    summary = zoo.run("vit-cifar", folder, task=task, out=tmp_path / name)
    assert (summary.done, summary.failed) == (1, 1)
    if name.startswith("p."):
        from zoo.outputs import read_csv

        written = read_csv(tmp_path / name, task) if name.endswith(".csv") else rows(tmp_path / name)
        found = {r["input"]: r["error"] for r in written}
        assert found == {f"{folder}/bad\\xff.png": f"{folder}/bad\\xff.png is not a readable image "
                                                    "(no image format that Pillow reads).", f"{folder}/caf\\xe9.png": None}
    assert zoo.run("vit-cifar", folder, task=task, out=tmp_path / name, resume=True).skipped == 2


def test_ctrl_c_in_a_bulk_run_is_one_line_saying_how_to_go_on(photos, tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(bulk, "make_row", interrupted)
    out = tmp_path / "p.parquet"
    result = CliRunner().invoke(build_cli(), ["classify", "vit-cifar", str(photos), "--out", str(out)])
    assert (result.exit_code, result.output) == (130, "Interrupted: the rows already written are kept; the same "
                                                      f"command with --resume runs only the inputs {out} lacks.\n")


@pytest.mark.parametrize("name, task", [("p.jsonl", "classify"), ("p.csv", "classify"), ("p.parquet", "classify"),
                                        ("e.npy", "embed"), ("e.safetensors", "embed")])
def test_resume_of_a_finished_file_appends_new_inputs(photos, tmp_path, monkeypatch, name, task):
    from zoo import outputs

    monkeypatch.setattr(outputs, "RESUME_ROWS", 4)  # the finished file comes back in several parts
    out, whole = tmp_path / name, tmp_path / f"whole{Path(name).suffix}"
    zoo.run("vit-cifar", photos, task=task, out=out)
    summary = zoo.run("vit-cifar", photos, task=task, out=out, resume=True, recursive=True)
    assert (summary.skipped, summary.done) == (9, 2)
    zoo.run("vit-cifar", photos, task=task, out=whole, recursive=True)
    resumed, uninterrupted = (sorted((r for c in outputs.read_chunks(f, task, "vit-cifar") for r in c),
                                     key=lambda r: r["input"]) for f in (out, whole))
    if task == "classify":
        assert same_rows(resumed, uninterrupted)
    else:
        assert [r["input"] for r in resumed] == [r["input"] for r in uninterrupted]
        assert all(np.allclose(a["embedding"], b["embedding"], atol=1e-5) for a, b in zip(resumed, uninterrupted)
                   if a["embedding"] is not None)


@pytest.mark.parametrize("name, content, message", [
    ("p.jsonl", b"garbage\n", "is not a zoo results file (JSONDecodeError"),
    ("p.jsonl", b'{"a": 1}\n', "holds a row that is not one of zoo's classify results ({'a': 1})"),
    ("p.jsonl", b'{"input": "x", "task": "describe", "text": "a cat"}\n', "holds describe results, not classify."),
    ("p.jsonl", b'{"input": "x", "task": "classify"}\ngarbage\n', "is not a zoo results file"),  # after a good part
    ("p.csv", b"name,size\nx,1\n", "is not a zoo results file (ValueError: its columns are name, size, not zoo's)"),
    ("p.parquet", b"PAR1 not really", "is not a zoo results file (ArrowInvalid"),
    ("e.npy", b"\x93NUMPY garbage", "is not a zoo results file"),
    ("e.safetensors", b"garbage!", "is not a zoo results file (SafetensorError"),
])
def test_resume_refuses_a_file_that_is_not_zoos_results_and_keeps_it(samples, tmp_path, monkeypatch, name, content,
                                                                     message):
    """Resuming appends to the file: one that is not zoo's results would be replaced, so it is refused as it is."""
    from zoo import outputs

    monkeypatch.setattr(outputs, "RESUME_ROWS", 1)
    out = tmp_path / name
    out.write_bytes(content)
    task = "embed" if name.startswith("e.") else "classify"
    with pytest.raises(zoo.ZooError, match=re.escape(f"--resume: {out} {message}")):
        zoo.run("vit-cifar", samples, task=task, out=out, resume=True)
    assert out.read_bytes() == content and not out.with_name(name + ".parts").exists()


def test_globs_skip_hidden_files_and_never_follow_a_link_back_up(photos, tmp_path):
    (photos / "more" / "up").symlink_to("..")  # a loop: photos/more/up/more/up/...
    Image.open(photos / "cat.png").save(photos / ".cat.png")  # hidden, as a shell glob leaves it out
    zoo.run("vit-cifar", f"{photos}/**/*.png", task="classify", out=tmp_path / "g.jsonl")
    found = [r["input"] for r in rows(tmp_path / "g.jsonl")]
    assert len(found) == 11 and len(set(found)) == 11 and not any("/up/" in f or "/." in f for f in found)
    zoo.run("vit-cifar", f"file://{photos}/**/*.png", task="classify", out=tmp_path / "f.jsonl")  # a file:// glob
    assert [r["input"] for r in rows(tmp_path / "f.jsonl")] == found


def test_videos_become_frames_for_image_models(tmp_path, write_clip):
    clip = write_clip(tmp_path / "clip.mp4")
    zoo.run("vit-cifar", clip, task="classify", out=tmp_path / "f.jsonl", fps=2.0)
    found = rows(tmp_path / "f.jsonl")
    assert [r["frame_time"] for r in found] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert found[1]["input"] == f"{clip}#t=0.500" and all(r["predictions"] for r in found)


def test_a_model_that_reads_video_gets_whole_videos_whatever_the_reading_options(qwen2vl_tiny, tmp_path,
                                                                                  write_clip):
    folder = tmp_path / "clips"
    folder.mkdir()
    write_clip(folder / "clip.mp4")
    model = zoo.load("qwen2-vl-2b-instruct", weights=qwen2vl_tiny)
    zoo.run(model, folder, task="describe", out=tmp_path / "c.jsonl", recursive=True, fps=2.0,
            options={"max_new_tokens": 2})
    [row] = rows(tmp_path / "c.jsonl")
    assert row["input"] == str(folder / "clip.mp4") and row["frame_time"] is None and row["error"] is None


@pytest.mark.parametrize("reading, message", [({"fps": 0}, "fps=0"), ({"column": ""}, "column=''")])
def test_bad_reading_options_fail_before_a_model_loads(reading, message, monkeypatch, tmp_path):
    monkeypatch.setattr(zoo.api, "load", lambda *a, **k: pytest.fail("loaded a model"))
    with pytest.raises(zoo.BadInput, match=message):
        zoo.run("vit-cifar", tmp_path, task="classify", out=tmp_path / "x.jsonl", **reading)


def test_describe_and_detect_rows(florence2_tiny, photos, tmp_path):
    model = zoo.load("florence-2-base", weights=florence2_tiny, batch_size=4)
    zoo.run(model, photos, task="describe", out=tmp_path / "c.jsonl", options={"max_new_tokens": 4})
    texts = [r["text"] for r in rows(tmp_path / "c.jsonl") if not r["error"]]
    assert len(texts) == 8 and all(isinstance(t, str) for t in texts)
    zoo.run(model, photos, task="detect", out=tmp_path / "d.parquet", options={"max_new_tokens": 8})
    assert len(rows(tmp_path / "d.parquet")) == 9
    (photos / "clip.mp4").write_bytes(b"not a video")  # its frames would go to Florence-2 as images
    zoo.run(model, photos / "clip.mp4", task="describe", out=tmp_path / "v.jsonl", options={"max_new_tokens": 4})
    assert "is not a readable video" in rows(tmp_path / "v.jsonl")[0]["error"]


def test_cli_bulk_commands_and_exit_codes(photos, tmp_path, samples):
    run = CliRunner().invoke
    result = run(build_cli(), ["classify", "vit-cifar", str(photos), "-r", "--out", str(tmp_path / "p.parquet")])
    assert result.exit_code == 1 and "done 10, failed 1, skipped 0" in result.output  # one input failed
    result = run(build_cli(), ["classify", "vit-cifar", str(samples), "--out", str(tmp_path / "q.csv")])
    assert result.exit_code == 0 and "done 10, failed 0" in result.output
    (tmp_path / "m.csv").write_text("file\n" + "\n".join(str(p) for p in sorted(samples.glob("*.png"))) + "\n")
    result = run(build_cli(), ["embed", "vit-cifar", str(tmp_path / "m.csv"), "--column", "file", "--out",
                               str(tmp_path / "f.parquet")])
    assert result.exit_code == 0 and pq.read_table(tmp_path / "f.parquet").num_rows == 10
    result = run(build_cli(), ["classify", "vit-cifar", str(samples), "--json"])
    assert len(json.loads(result.output)) == 10  # a folder works without --out too


@pytest.mark.slow
def test_the_ray_engine_equals_the_local_engine_row_for_row(tmp_path, ray_in_this_process, monkeypatch):
    from zoo.datasets import cifar10_sample

    folder = tmp_path / "cifar"
    folder.mkdir()
    for i, image in enumerate(cifar10_sample(split="all").items):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    (folder / "zz-broken.png").write_bytes(b"broken")
    shutil.copy(folder / "000.png", folder / os.fsdecode(b"caf\xe9.png"))  # a name that is not UTF-8 travels too
    from zoo import ray_engine

    monkeypatch.setattr(ray_engine, "CHUNK", 64)  # the driver hands Ray the inputs in pieces, never all at once
    local = zoo.run("vit-cifar", folder, task="classify", out=tmp_path / "local.parquet")
    distributed = zoo.run("vit-cifar", folder, task="classify", out=tmp_path / "ray.parquet", engine="ray",
                          concurrency=2)
    assert (distributed.done, distributed.failed) == (local.done, local.failed) == (201, 1)
    import pyarrow.dataset as ds

    ray_rows = sorted(ds.dataset(str(tmp_path / "ray.parquet")).to_table().to_pylist(), key=lambda r: r["input"])
    local_rows = sorted(pq.read_table(tmp_path / "local.parquet").to_pylist(), key=lambda r: r["input"])
    assert [(r["input"], r["error"]) for r in ray_rows] == [(r["input"], r["error"]) for r in local_rows]
    for a, b in zip(ray_rows, local_rows):
        assert (a["predictions"] is None) == (b["predictions"] is None)
        if a["predictions"]:
            assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
            assert all(abs(p["score"] - q["score"]) < 1e-5 for p, q in zip(a["predictions"], b["predictions"]))
    # a list naming a path no file system takes: an error row in both engines (ray said "in-memory images")
    (tmp_path / "list.txt").write_text(f"{folder / '000.png'}\n{'x' * 300}.png\n")
    summaries = [zoo.run("vit-cifar", tmp_path / "list.txt", task="classify", out=tmp_path / f"{engine}-list.jsonl",
                         engine=engine) for engine in ("local", "ray")]
    assert [(s.done, s.failed) for s in summaries] == [(1, 1), (1, 1)]
    listed = rows(tmp_path / "local-list.jsonl"), rows_of_folder(tmp_path / "ray-list.jsonl")
    assert [[(r["input"], r["error"]) for r in found] for found in listed] == \
        [[(r["input"], r["error"]) for r in sorted(listed[0], key=lambda r: r["input"])]] * 2
    assert "longer than the file system allows" in listed[1][-1]["error"]


@pytest.mark.slow
def test_the_ray_predictor_runs_a_zoo_model_in_a_users_own_ray_pipeline(tmp_path, samples, ray_in_this_process):
    import ray.data

    from zoo import ray_engine

    folder = tmp_path / "photos"
    shutil.copytree(samples, folder)
    (folder / "zz-broken.png").write_bytes(b"not an image")
    ray_engine.start(ray, None)
    expected = {p.name: r[0].label for p, r in
                zip(sorted(samples.glob("*.png")), zoo.load("vit-cifar").classify(sorted(samples.glob("*.png"))))}
    arrays = ray.data.read_images(str(samples), include_paths=True).map_batches(
        zoo.RayPredictor, fn_constructor_kwargs={"model": "vit-cifar", "task": "classify", "options": {"top_k": 2}},
        compute=ray.data.ActorPoolStrategy(size=1), batch_size=4).take_all()
    assert {Path(r["path"]).name: r["predictions"][0]["label"] for r in arrays} == expected
    assert set(arrays[0]) == {"path", "task", "model", "predictions", "error"} and len(arrays[0]["predictions"]) == 2
    files = ray.data.read_binary_files(str(folder), include_paths=True).map_batches(
        zoo.RayPredictor, fn_constructor_kwargs={"model": "vit-cifar", "task": "embed", "column": "bytes"},
        compute=ray.data.ActorPoolStrategy(size=1), batch_size=4, batch_format="pandas").take_all()
    assert {len(r["embedding"]) for r in files if r["error"] is None} == {256}
    errors = {Path(r["path"]).name: r["error"] for r in files}
    assert "is not a readable image" in errors.pop("zz-broken.png") and set(errors.values()) == {None}
    listed = ray.data.from_items([{"file": str(p), "id": i} for i, p in enumerate(sorted(folder.glob("*.png")))])
    by_path = listed.map_batches(zoo.RayPredictor, fn_constructor_kwargs={"model": "vit-cifar", "task": "classify",
                                                                         "column": "file"},
                                  compute=ray.data.ActorPoolStrategy(size=1)).take_all()
    assert [(r["id"], Path(r["file"]).name, r["predictions"] and r["predictions"][0]["label"])  # Ray keeps no order
            for r in sorted(by_path, key=lambda r: r["id"])] == \
        [(i, name, expected.get(name)) for i, name in enumerate(sorted(expected) + ["zz-broken.png"])]
    records = ray.data.from_items([{"image": {"bytes": None, "path": str(p)}, "id": i}  # as from_huggingface reads
                                   for i, p in enumerate(sorted(samples.glob("*.png")))])
    by_record = records.map_batches(zoo.RayPredictor, fn_constructor_kwargs={"model": "vit-cifar", "task": "classify"},
                                    compute=ray.data.ActorPoolStrategy(size=1)).take_all()
    assert [r["predictions"][0]["label"] for r in sorted(by_record, key=lambda r: r["id"])] == list(expected.values())
    with pytest.raises(zoo.ZooError, match="The batch has no column 'image' \\(it has file, id\\): name the"):
        zoo.RayPredictor("vit-cifar", "classify")({"file": np.array(["a.png"]), "id": np.array([0])})


RAY_SCRIPT = """
import json, sys
import torch
import zoo


class Brightness(torch.nn.Module):
    def forward(self, x):
        light = x.mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([-light, light], dim=1) * 10


@zoo.register_model("brightness", labels=["dark", "light"], preprocess={"input_size": 32, "mean": [0, 0, 0],
                                                                         "std": [1, 1, 1]})
def brightness():
    return Brightness()


inputs, out = sys.argv[1:3], sys.argv[3]  # a folder and a video's URL
runs = [zoo.run("brightness", inputs, task="classify", out=out + ".jsonl", fps=2.0),
        zoo.run("brightness", inputs, task="classify", out=out + "-ray.jsonl", fps=2.0, engine="ray", concurrency=1),
        zoo.run("brightness", inputs, task="classify", out=out + "-ray.jsonl", fps=2.0, engine="ray", resume=True),
        zoo.run("brightness", inputs, task="classify", out=out + "-ray.csv", fps=2.0, engine="ray", concurrency=1)]
print(json.dumps([[s.done, s.failed, s.skipped] for s in runs]))
"""


@pytest.mark.slow
def test_the_ray_engine_splits_videos_and_loads_models_registered_in_the_drivers_code(tmp_path, subprocess_env,
                                                                                     write_clip):
    folder = tmp_path / "media"
    folder.mkdir()
    write_clip(folder / "clip.mp4")
    (folder / "broken.mp4").write_bytes(b"not a video")
    Image.new("RGB", (32, 32), "white").save(folder / "white.png")
    (tmp_path / "script.py").write_text(RAY_SCRIPT)
    server = Hub()
    server.files["clip.mp4"] = (folder / "clip.mp4").read_bytes()
    online = {k: v for k, v in subprocess_env.items() if k not in ("ZOO_OFFLINE", "HF_HUB_OFFLINE")}
    try:
        done = subprocess.run([sys.executable, str(tmp_path / "script.py"), str(folder), f"{server.url}/files/clip.mp4",
                               str(tmp_path / "out")], env=online, capture_output=True, text=True, timeout=300)
    finally:
        server.close()
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == [[13, 1, 0], [13, 1, 0], [0, 0, 4], [13, 1, 0]]
    local = sorted(rows(tmp_path / "out.jsonl"), key=lambda r: r["input"])
    for ray in (rows_of_folder(tmp_path / "out-ray.jsonl"), rows_of_folder(tmp_path / "out-ray.csv")):
        assert [(r["input"], r["frame_time"], r["error"] is None) for r in ray] == \
            [(r["input"], r["frame_time"], r["error"] is None) for r in local]
        assert same_rows(ray, local)
    assert [r["predictions"][0]["label"] for r in local if r["frame_time"] is not None] == \
        (["dark"] * 4 + ["light"] * 2) * 2  # grey levels 0, 40, ..., 200 of 255; the file, then its URL


RAY_GPU_SCRIPT = """
import json, os, sys
import ray, torch
import zoo

ray.init(num_cpus=2, num_gpus=2, include_dashboard=False)  # a cluster with GPUs, seen from a driver without one
OUT = sys.argv[2]


@zoo.register_model("where", labels=["a", "b"], preprocess={"input_size": 8})
def where(tag=""):
    with open(os.path.join(OUT, f"{tag}-{os.getpid()}.json"), "w") as f:  # in each actor, as it loads the model
        json.dump(ray.get_gpu_ids(), f)
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2))


for tag, load in (("gpu", {}), ("cpu", {"device": "cpu"})):
    zoo.run("where", sys.argv[1], task="classify", out=os.path.join(OUT, tag + ".parquet"), engine="ray",
            concurrency=2, load={"tag": tag, **load})
"""


@pytest.mark.slow
def test_ray_actors_take_a_gpu_each_where_the_cluster_has_gpus_though_the_driver_has_none(tmp_path, samples,
                                                                                        subprocess_env):
    (tmp_path / "script.py").write_text(RAY_GPU_SCRIPT)
    (tmp_path / "out").mkdir()
    done = subprocess.run([sys.executable, str(tmp_path / "script.py"), str(samples), str(tmp_path / "out")],
                          env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    gpus = {tag: sorted(json.loads(p.read_text()) for p in (tmp_path / "out").glob(f"{tag}-*.json"))
            for tag in ("gpu", "cpu")}
    assert gpus == {"gpu": [[0], [1]], "cpu": [[], []]}  # (Ray's fake GPUs: the workers' torch runs on the CPU)


def test_the_ray_engine_never_replaces_a_file_or_a_folder_of_other_files(tmp_path, samples):
    out = tmp_path / "preds.parquet"
    out.write_bytes(b"a local engine's output")
    with pytest.raises(zoo.ZooError, match="is a file; the ray engine writes a folder"):
        zoo.run("vit-cifar", samples, task="classify", out=out, engine="ray")
    assert out.read_bytes() == b"a local engine's output"
    folder = tmp_path / "mine.parquet"
    (folder / "notes").mkdir(parents=True)
    with pytest.raises(zoo.ZooError, match="holding other files than a ray run's .parquet files"):
        zoo.run("vit-cifar", samples, task="classify", out=folder, engine="ray")
    assert (folder / "notes").is_dir()
    done = tmp_path / "done.parquet"
    done.mkdir()
    (done / "part.parquet").write_bytes(b"an earlier ray run's rows")
    with pytest.raises(zoo.ZooError, match="done.parquet holds results already: pass --resume"):
        zoo.run("vit-cifar", samples, task="classify", out=done, engine="ray")
    assert (done / "part.parquet").read_bytes() == b"an earlier ray run's rows"


def test_the_ray_engine_refuses_images_in_memory_before_ray_starts(tmp_path, samples, monkeypatch):
    from PIL import Image

    from zoo import ray_engine

    started = []
    monkeypatch.setattr(ray_engine, "start", lambda *args: started.append(args))
    with pytest.raises(zoo.ZooError, match=r"^input-1 is an image the driver holds, .*engine='local', or make a Ray"):
        zoo.run("vit-cifar", [samples / "cat.png", Image.open(samples / "dog.png")], task="classify",
                out=tmp_path / "preds.parquet", engine="ray")
    assert not started and not (tmp_path / "preds.parquet").exists()


def test_the_ray_engine_names_a_damaged_part_when_resuming(tmp_path, samples):
    for name, part in (("preds.jsonl", "a.json"), ("preds.parquet", "a.parquet"), ("preds.csv", "a.csv")):
        (tmp_path / name).mkdir()
        (tmp_path / name / part).write_text("garbage\n")
        with pytest.raises(zoo.ZooError, match=f"{part} is not a readable part of a ray run's output .*: remove it"):
            zoo.run("vit-cifar", samples, task="classify", out=tmp_path / name, engine="ray", resume=True)
    from zoo.ray_engine import counts, done_inputs, output_files, written

    (tmp_path / "preds.csv" / "a.csv").write_text("input,model,frame_time,error\n001.png,m,,\n"
                                                  "clip.mp4#t=0.500,m,0.5,bad\n")
    (tmp_path / "preds.csv" / "b.csv").write_text("")  # a write cut short
    files = output_files(tmp_path / "preds.csv")
    assert [t.to_pylist() for t in written(files)] == [
        [{"input": "001.png", "model": "m", "frame_time": None, "error": None},
         {"input": "clip.mp4#t=0.500", "model": "m", "frame_time": 0.5, "error": "bad"}]]
    done = done_inputs(files, tmp_path / "preds.csv", "m")  # a video is done once any of its frames is
    assert len(done) == 2 and "001.png" in done and "clip.mp4" in done and "clip.mp4#t=0.500" not in done
    with pytest.raises(zoo.ZooError, match=r"preds.csv holds results of m, not vit-cifar. Resume with m, choose"):
        done_inputs(files, tmp_path / "preds.csv", "vit-cifar")
    assert counts(files) == (2, 1) and counts([]) == (0, 0) and output_files(tmp_path / "none.csv") == []


@pytest.mark.slow
def test_a_resumed_ray_run_runs_and_counts_only_what_is_missing(tmp_path, samples, ray_in_this_process):
    paths = sorted(str(p) for p in samples.glob("*.png"))
    out = tmp_path / "preds.parquet"
    first = zoo.run("vit-cifar", paths[:4], task="classify", out=out, engine="ray", concurrency=1)
    resumed = zoo.run("vit-cifar", paths, task="classify", out=out, engine="ray", concurrency=1, resume=True)
    assert (first.done, first.skipped) == (4, 0) and (resumed.done, resumed.failed, resumed.skipped) == (6, 0, 4)
    import pyarrow.dataset as ds

    assert sorted(ds.dataset(str(out)).to_table().column("input").to_pylist()) == paths  # each once


def test_images_held_in_memory_are_let_go_once_decoded(tmp_path, monkeypatch):
    """Video frames are decoded images: with a model slower than decoding, four to six batches of them waited
    (1080p frames at batch 64: 2.6 GB resident, now 1.5 GB; at batch 256, 6 GB)."""
    import time
    import weakref

    model = zoo.load("vit-cifar", batch_size=8)
    freed, worst = [], [0]

    def frames():
        for i in range(200):
            frame = Image.new("RGB", (64, 48), (i, 0, 0))
            weakref.finalize(frame, freed.append, i)
            worst[0] = max(worst[0], i + 1 - len(freed))
            yield frame

    run = model.classify_batch

    def slow(pixels, options):
        time.sleep(0.02)  # the prefetch queue fills up
        return run(pixels, options)

    monkeypatch.setattr(model, "classify_batch", slow)
    assert zoo.run(model, frames(), task="classify", out=tmp_path / "p.jsonl").done == 200
    assert worst[0] <= 3 * model.batch_size, f"{worst[0]} frames were alive at once"  # 16 here; 41 before


def test_one_run_at_a_time_writes_an_output(tmp_path, samples, monkeypatch):
    from zoo.outputs import Writer

    out = tmp_path / "p.jsonl"
    with Writer(out, "classify", "vit-cifar"):  # a run in progress, as another process would hold it
        with pytest.raises(zoo.ZooError, match="Another run is writing .*p.jsonl now"):
            zoo.run("vit-cifar", samples, task="classify", out=out)
    assert zoo.run("vit-cifar", samples, task="classify", out=out).done == 10  # and afterwards it can
    monkeypatch.setattr(bulk, "make_row", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # a run that breaks half-way lets go of the output
        zoo.run("vit-cifar", samples, task="classify", out=out, force=True)
    with Writer(out, "classify", "vit-cifar", resume=True):
        pass


def test_results_already_written_are_replaced_only_when_asked(tmp_path, samples, monkeypatch):
    out = tmp_path / "p.jsonl"
    zoo.run("vit-cifar", samples / "cat.png", task="classify", out=out)
    kept = out.read_bytes()
    with pytest.raises(zoo.ZooError, match=r"p.jsonl holds results already: pass --resume .* --force to replace it"):
        zoo.run("vit-cifar", samples / "dog.png", task="classify", out=out)
    assert out.read_bytes() == kept
    with pytest.raises(zoo.ZooError, match="pass one of them"):
        zoo.run("vit-cifar", samples / "dog.png", task="classify", out=out, resume=True, force=True)
    assert zoo.run("vit-cifar", samples / "dog.png", task="classify", out=out, force=True).done == 1
    assert [r["input"] for r in rows(out)] == [str(samples / "dog.png")]
    monkeypatch.setattr(bulk, "CHUNK_ROWS", 2)
    real, made = bulk.make_row, []

    def dying(*args):
        made.append(args)
        if len(made) > 4:
            raise RuntimeError("killed")
        return real(*args)

    monkeypatch.setattr(bulk, "make_row", dying)
    killed = tmp_path / "killed.jsonl"
    with pytest.raises(RuntimeError):  # killed after two chunks: only the parts are there
        zoo.run("vit-cifar", samples, task="classify", out=killed)
    with pytest.raises(zoo.ZooError, match=r"killed.jsonl.parts holds the rows of an interrupted run: pass --resume"):
        zoo.run("vit-cifar", samples, task="classify", out=killed)
    assert len(list((tmp_path / "killed.jsonl.parts").glob("part-*.parquet"))) == 2


@pytest.mark.parametrize("killed", [False, True])
def test_resume_refuses_the_results_of_another_model_and_keeps_them(tmp_path, samples, monkeypatch, killed):
    """Resuming appends: another model's rows and this one's would make one output of two models' results. The
    refusal comes before the model loads (a VLM takes a minute)."""
    from zoo.outputs import Writer

    out = tmp_path / "p.jsonl"
    with Writer(out, "classify", "deit-tiny") as writer:
        writer.write([{"input": str(samples / "cat.png"), "task": "classify", "model": "deit-tiny", "frame_time": None,
                       "predictions": [], "error": None}])
        if not killed:
            writer.close()
    kept = sorted((p.name, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    where = "p.jsonl.parts" if killed else "p.jsonl"
    monkeypatch.setattr(zoo.api, "load", lambda *args, **kwargs: pytest.fail("the model loaded"))
    with pytest.raises(zoo.ZooError, match=f"--resume: .*{where} holds results of deit-tiny, not vit-cifar. Resume "
                                           "with deit-tiny, choose another --out"):
        zoo.run("vit-cifar", samples, task="classify", out=out, resume=True)
    assert sorted((p.name, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()) == kept


def test_resuming_a_csv_keeps_texts_that_look_like_json(tmp_path, photos):
    from zoo.outputs import Writer

    with Writer(tmp_path / "t.csv", "describe", "m") as writer:
        writer.write([{"input": "a", "task": "describe", "model": "m", "frame_time": None, "text": "[a cat] {on} a mat",
                       "error": None}])
        writer.close()
    with Writer(tmp_path / "t.csv", "describe", "m", resume=True) as resumed:
        done = resumed.done()
        assert "a" in done and len(done) == 1
        resumed.close()
    import csv

    assert next(csv.DictReader(open(tmp_path / "t.csv")))["text"] == "[a cat] {on} a mat"


class Picky(zoo.Model):
    """Refuses 7x7 images when it runs them (not when it reads them), as a model's own check would."""

    capabilities = frozenset({"classify"})

    def classify_batch(self, images, options):
        if any(image.size == (7, 7) for image in images):
            raise zoo.BadInput("this model refuses 7x7 images")
        return [[zoo.Prediction("fine", 0, 1.0)] for _ in images]


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_an_input_the_model_refuses_is_an_error_row_in_any_batch(tmp_path, batch_size):
    """A failing batch reruns one input at a time; a batch of one is already that (it ended the run)."""
    @zoo.register_model("picky", override=True)
    def picky():
        model = Picky(zoo.info("picky"))
        model.batch_size = batch_size
        return model

    arrays = [np.zeros((size, size, 3), np.uint8) for size in (8, 7, 8)]
    zoo.run("picky", arrays, task="classify", out=tmp_path / "rows.jsonl")
    assert [row["error"] for row in rows(tmp_path / "rows.jsonl")] == [None, "this model refuses 7x7 images", None]


def test_arguments_that_would_do_nothing_are_errors(samples, tmp_path):
    with pytest.raises(zoo.ZooError, match="address and concurrency are the ray engine's"):
        zoo.run("vit-cifar", samples, task="classify", out=tmp_path / "a.jsonl", concurrency=4)
    with pytest.raises(zoo.ZooError, match="this model is loaded already"):
        zoo.run(zoo.load("vit-cifar"), samples, task="classify", out=tmp_path / "a.jsonl", load={"batch_size": 4})
    assert not (tmp_path / "a.jsonl").exists()
