"""The CLI: exact output, JSON, errors as one line with a non-zero exit, no torch at start-up, the reference."""

import base64
import json
import os
import pty
import select
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from safetensors.torch import load_file

from zoo.cli import build_cli
from zoo.inputs import input_key
from zoo.registry import builtin_registry_path
from zoo.tables import table, table_lines


def zoo_cli(*args):
    return CliRunner().invoke(build_cli(), [str(a) for a in args])


def test_list_exact():
    result = zoo_cli("list", "dino-*")
    assert result.exit_code == 0
    assert result.output == (
        "NAME         PLUGIN  TASKS  PARAMS\n"
        "dino-vitb8   timm    embed  85.8M\n"
        "dino-vitb16  timm    embed  85.8M\n"
        "dino-vits8   timm    embed  21.7M\n"
        "dino-vits16  timm    embed  21.7M\n"
    )
    data = json.loads(zoo_cli("list", "--task", "describe", "--json").output)
    assert [d["name"] for d in data][:2] == ["florence-2-base", "florence-2-base-ft"]


def test_info_exact():
    result = zoo_cli("info", "mae-vitb16")
    assert result.exit_code == 0
    assert result.output == (
        "name:              mae-vitb16\n"
        "plugin:            timm\n"
        "architecture:      vit_base_patch16_224.mae\n"
        "aliases:           vit_base_patch16_224.mae\n"
        "tasks:             embed\n"
        "license:           cc-by-nc-4.0\n"
        "paper:             https://arxiv.org/abs/2111.06377\n"
        "params:            85800000\n"
        "metrics:           imagenet_finetuned_top1=83.6\n"
        "description:       MAE self-supervised ViT encoder: no classifier head; use embed or zoo probe\n"
        f"source:            {builtin_registry_path()}\n"
        "load options:      num_classes (int or None), global_pool (str or None), img_size (int or None), "
        "model_args (dict or None)\n"
        "embed options:     patch_tokens (bool)\n"
    )
    shown = json.loads(zoo_cli("info", "vit-cifar", "--json").output)
    assert shown["labels"] == "cifar10" and shown["call_options"]["classify"] == "top_k (int), labels (a list of str or None)"


def test_classify_table_and_json(samples):
    result = zoo_cli("classify", "vit-cifar", samples / "frog.png", "--top-k", "2")
    lines = result.output.splitlines()
    assert result.exit_code == 0 and lines[0].split() == ["INPUT", "RANK", "LABEL", "SCORE"] and len(lines) == 3
    assert lines[1].split()[2] == "frog"
    data = json.loads(zoo_cli("classify", "vit-cifar", samples / "frog.png", "--top-k", "1", "--json").output)
    assert data[0]["predictions"][0]["label"] == "frog" and 0 < data[0]["predictions"][0]["score"] <= 1
    result = zoo_cli("classify", "vit-cifar", samples / "frog.png", "--labels", "frog,cat", "--json")
    assert {p["label"] for p in json.loads(result.output)[0]["predictions"]} == {"frog", "cat"}


def test_a_bad_input_is_named_and_the_others_printed(samples, tmp_path):
    """As in a bulk run (and FiftyOne's skip_failures): one unreadable file in a folder costs only its own result."""
    for name in ("cat", "dog"):
        (tmp_path / f"{name}.png").write_bytes((samples / f"{name}.png").read_bytes())
    (tmp_path / "broken.png").write_bytes(b"not an image")
    failed = [f"Error: {tmp_path / 'broken.png'} is not a readable image (no image format that Pillow reads).",
              "Error: 1 of 3 inputs failed, each named above; the results of the other 2 are printed."]
    result = zoo_cli("classify", "vit-cifar", tmp_path, "--top-k", "1")
    assert result.exit_code == 1 and result.stderr.splitlines() == failed
    assert [line.split()[:3] for line in result.stdout.splitlines()[1:]] == [
        [str(tmp_path / "cat.png"), "1", "cat"], [str(tmp_path / "dog.png"), "1", "dog"]]
    result = zoo_cli("classify", "vit-cifar", tmp_path, "--json")
    assert result.exit_code == 1 and [r["input"] for r in json.loads(result.stdout)] == [
        str(tmp_path / "cat.png"), str(tmp_path / "dog.png")]
    result = zoo_cli("classify", "vit-cifar", tmp_path / "broken.png", tmp_path / "broken.png")
    assert result.exit_code == 1 and result.stdout == "" and result.stderr.splitlines()[-1] == (
        "Error: 2 of 2 inputs failed, each named above.")


def test_a_streamed_table_is_the_table_its_first_page_sets_the_widths_of():
    rows = [("a.png", 1, "cat"), ("bb.png", 2, "dog")]
    assert "\n".join(table_lines(iter(rows), ["INPUT", "RANK", "LABEL"])) == table(rows, ["INPUT", "RANK", "LABEL"])
    assert list(table_lines(iter(rows + [("a-much-longer-name.png", 3, "frog")]), ["IN", "N", "L"], page=2)) == [
        "IN      N  L", "a.png   1  cat", "bb.png  2  dog", "a-much-longer-name.png  3  frog"]
    assert list(table_lines(iter([]), ["IN"])) == []


def test_a_streamed_tables_first_page_waits_a_set_time_for_rows_that_come_slowly():
    """A slow model's batches: with `wait`, the first page ends at the first row that comes that long after the
    first row, so the first batch is shown when the second comes, not when the last does."""
    done = []

    def batches():
        yield from [("a.png", 1), ("b.png", 1)]
        time.sleep(0.3)
        yield from [("c.png", 1), ("a-longer-name.png", 1)]
        time.sleep(0.3)
        yield ("d.png", 1)
        done.append(True)

    lines = table_lines(batches(), ["IN", "N"], wait=0.1)
    assert [next(lines) for _ in range(4)] == ["IN     N", "a.png  1", "b.png  1", "c.png  1"] and not done
    assert list(lines) == ["a-longer-name.png  1", "d.png  1"] and done


@pytest.mark.slow
@pytest.mark.parametrize("as_json", [False, True])
def test_printed_results_come_while_the_inputs_still_do(samples, subprocess_env, as_json):
    """find photos/ | zoo classify NAME -: a table's first page (the widths) and each JSON item are printed as the
    model gives them, before standard input ends, never all held until the last input."""
    zoo = subprocess.Popen([sys.executable, "-m", "zoo", "classify", "vit-cifar", "-", "--top-k", "5"] +
                           ["--json"] * as_json, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=subprocess_env)
    zoo.stdin.write(f"{samples / 'cat.png'}\n" * 600)  # two batches, 3,000 rows: more than a table's first page
    zoo.stdin.flush()
    printed, _, _ = select.select([zoo.stdout], [], [], 120)
    first = zoo.stdout.readline() if printed else "nothing in 120 s"
    zoo.stdin.write(f"{samples / 'dog.png'}\n")
    zoo.stdin.close()
    rest = zoo.stdout.read()
    assert zoo.wait() == 0, zoo.stderr.read()
    if as_json:
        assert first == "[\n" and [r["input"] for r in json.loads(first + rest)][-2:] == [
            str(samples / "cat.png"), str(samples / "dog.png")]
    else:
        assert first.split() == ["INPUT", "RANK", "LABEL", "SCORE"] and len(rest.splitlines()) == 601 * 5


@pytest.mark.slow
def test_in_a_terminal_a_slow_streams_first_results_show_before_a_page_is_full(samples, subprocess_env):
    """zoo classify NAME - in a terminal, inputs coming slowly: the first batch's rows are printed once the next
    batch comes, though together they are far fewer than a table's first page of 1,000 rows."""
    terminal, shown = pty.openpty()
    zoo = subprocess.Popen([sys.executable, "-m", "zoo", "classify", "vit-cifar", "-", "--batch-size", "4"],
                           stdin=subprocess.PIPE, stdout=shown, stderr=subprocess.PIPE, text=True, env=subprocess_env)
    os.close(shown)
    printed = []
    for _ in range(20):  # a batch of 4 inputs (20 rows) every 1.5 s, longer than the first page waits
        zoo.stdin.write(f"{samples / 'cat.png'}\n" * 4)
        zoo.stdin.flush()
        printed, _, _ = select.select([terminal], [], [], 1.5)
        if printed:
            break
    first = ""
    while printed and first.count("\n") < 2:  # the header and the first row (they may come in two writes)
        first += os.read(terminal, 1 << 16).decode()
        printed, _, _ = select.select([terminal], [], [], 5)
    first = first or "nothing after 400 rows"
    zoo.stdin.close()
    drain(terminal)  # a full terminal would block zoo's writes
    assert zoo.wait() == 0, zoo.stderr.read()
    assert first.split()[:5] == ["INPUT", "RANK", "LABEL", "SCORE", str(samples / "cat.png")]


def test_a_log_gets_no_progress_bars_from_the_libraries_either(samples, subprocess_env, florence2_tiny):
    """zoo describe ... 2> log: transformers draws a bar while it loads weights, unless told what zoo knows, and
    transformers 5.0 announces its fast image processors (a quick test, so that CI's lowest versions run it)."""
    done = subprocess.run([sys.executable, "-m", "zoo", "describe", "florence-2-base", str(samples / "cat.png"),
                           "--weights", str(florence2_tiny), "--max-new-tokens", "2"],
                          capture_output=True, text=True, env=subprocess_env, timeout=300)
    assert done.returncode == 0 and done.stdout and done.stderr == "", done.stderr[-2000:]


def drain(terminal):
    """Read a pseudo-terminal until its other end is closed (Linux then says EIO), and close it."""
    try:
        while os.read(terminal, 1 << 16):
            pass
    except OSError:
        pass
    os.close(terminal)


def test_embed_writes_safetensors_and_npy(samples, tmp_path):
    result = zoo_cli("embed", "vit-cifar", samples / "cat.png", samples / "dog.png", "--out", tmp_path / "e.safetensors")
    assert result.exit_code == 0 and result.output.startswith("done 2, failed 0, skipped 0")
    assert load_file(tmp_path / "e.safetensors")["embeddings"].shape == (2, 256)
    assert zoo_cli("embed", "vit-cifar", samples / "cat.png", "--out", tmp_path / "e.npy").exit_code == 0
    result = zoo_cli("embed", "vit-cifar", samples / "cat.png", "--out", tmp_path / "e.txt")
    assert result.exit_code == 1 and "use a file name ending in .jsonl, .csv, .parquet, .npy, .safetensors" in result.output


NOT_AN_IMAGE = "data:image/png;base64," + base64.b64encode(b"not an image").decode()


def test_errors_are_one_line_with_exit_1(samples, tmp_path):
    cases = [
        (["classify", "vit-cifra", samples / "cat.png"], "Error: Unknown model 'vit-cifra'. Did you mean: vit-cifar,"),
        (["classify", "vit-cifar", tmp_path / "missing.png"], f"Error: Image file not found: {tmp_path / 'missing.png'}"),
        (["describe", "vit-cifar", samples / "cat.png"], "Error: Model 'vit-cifar' cannot describe."),
        (["classify", "deit-tiny", samples / "cat.png"], "Error: Model 'deit-tiny': weights not found"),
        (["eval", "vit-cifar", "--data-root", tmp_path], "Error: CIFAR-10 not found"),
        (["eval", "vit-cifar", "--data-root", samples / "cat.png"], f"Error: --data-root {samples / 'cat.png'} is a file"),
        (["classify", "vit-cifar", NOT_AN_IMAGE], f"Error: {input_key(NOT_AN_IMAGE)} is not a readable image ("),
        (["classify", "vit-cifar", NOT_AN_IMAGE + "!"], f"Error: {input_key(NOT_AN_IMAGE + '!')}: the base64 payload"),
    ]  # a data: URI is named as its results row names it, once
    for args, start in cases:
        result = zoo_cli(*args)
        assert result.exit_code == 1, result.output
        assert result.output.startswith(start) and result.output.count("\n") == 1, result.output
        assert "Traceback" not in result.output


def test_plugins_lists_hooks_and_failures():
    result = zoo_cli("plugins")
    assert result.exit_code == 0
    assert result.output.splitlines()[0].split() == ["PLUGIN", "PACKAGE", "HOOKS"]
    assert any(line.startswith("vit_cifar ") and "register_commands, register_loaders" in line
               for line in result.output.splitlines())
    data = json.loads(zoo_cli("plugins", "--json").output)
    assert data["failures"] == [] and {"timm", "florence2", "qwen2vl", "example"} <= {p["name"] for p in data["plugins"]}


def test_help_and_list_do_not_import_torch(subprocess_env):
    code = ("import sys, runpy; sys.argv = ['zoo'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('zoo', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'timm') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    for args in (["--help"], ["list"], ["info", "deit-tiny"], ["plugins"]):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                             env=subprocess_env).stdout
        assert out.strip().endswith("HEAVY []"), (args, out[-300:])


def test_cli_exit_code_and_stderr_from_a_real_process(samples, subprocess_env):
    done = subprocess.run([sys.executable, "-m", "zoo", "classify", "nope", str(samples / "cat.png")],
                          capture_output=True, text=True, env=subprocess_env)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == ["Error: Unknown model 'nope'. Run 'zoo list' to see every model."]


REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def command_paths(command, path=("zoo",)):
    """Every command of the CLI by its words (the root and each leaf; groups only through their commands)."""
    if not isinstance(command, click.Group):
        return [path]
    found = [path] if len(path) == 1 else []
    for name in command.list_commands(None):
        found += command_paths(command.get_command(None, name), (*path, name))
    return found


def help_text(cli, path):
    result = CliRunner().invoke(cli, [*path[1:], "--help"], prog_name="zoo", terminal_width=80, max_content_width=80)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_cli_reference_is_the_help_of_every_command(monkeypatch):
    """docs/cli.md shows zoo's own commands (no third-party plugin's); ZOO_WRITE_DOCS=1 rewrites it."""
    from zoo import plugins

    own = [e.name for e in metadata.distribution("zoo").entry_points if e.group == "zoo"]
    monkeypatch.setenv("ZOO_PLUGINS", ",".join(own))
    plugins.reset()
    cli = build_cli()
    helps = {" ".join(path): help_text(cli, path) for path in command_paths(cli)}
    text = REFERENCE.read_text()
    head, *sections = text.split("\n## ")
    order = [s.split("\n", 1)[0] for s in sections if s.split("\n", 1)[0] in helps]
    order += [title for title in helps if title not in order]
    expected = head + "".join(f"\n## {title}\n\n```\n{helps[title]}```\n" for title in order)
    if os.environ.get("ZOO_WRITE_DOCS"):
        REFERENCE.write_text(expected)
    assert text == expected, "docs/cli.md is out of date: ZOO_WRITE_DOCS=1 python -m pytest tests/test_cli.py -k reference"


def test_a_missing_optional_package_is_one_line_naming_its_extra(samples, tmp_path, monkeypatch):
    (tmp_path / "clip.mp4").write_bytes(b"not read: the package is missing first")
    cases = [
        ("av", ["classify", "vit-cifar", tmp_path / "clip.mp4"], "video"),
        ("ray", ["classify", "vit-cifar", samples, "--out", tmp_path / "r.jsonl", "--engine", "ray"], "ray"),
        ("timm", ["classify", "timm:deit_tiny_patch16_224", samples / "cat.png"], "timm"),
        # named before the weights are looked for (or gigabytes of them downloaded)
        ("transformers", ["describe", "florence-2-base", samples / "cat.png"], "vlm"),
        ("qwen_vl_utils", ["describe", "qwen2-vl-2b-instruct", samples / "cat.png"], "vlm"),
        # before the benchmark runs, not after it: no row is kept
        ("matplotlib", ["bench", "vit-cifar", "--dataset", "cifar10-sample", "--plot", tmp_path / "b.png"], "plot"),
    ]
    for module, args, extra in cases:
        with monkeypatch.context() as blocked:
            blocked.setitem(sys.modules, module, None)  # what importing a package that is not installed does
            result = zoo_cli(*args)
        assert result.exit_code == 1, result.output
        assert result.output == f"Error: This needs the Python package {module!r}: pip install 'zoo[{extra}]'\n"
    assert json.loads(zoo_cli("results", "--json").output) == []  # nothing ran


def test_bench_confusion_is_checked_before_the_run():
    result = zoo_cli("bench", "vit-cifar", "--dataset", "cifar10-sample", "--confusion", "vit-cifar")
    assert result.exit_code == 1 and "--confusion picks the model drawn by --plot or --report" in result.output
    result = zoo_cli("bench", "vit-cifar", "--dataset", "cifar10-sample", "--report", "r.html", "--confusion", "deit-tiny")
    assert result.exit_code == 1 and result.output.startswith("Error: --confusion deit-tiny: not one of the models")
    assert json.loads(zoo_cli("results", "--json").output) == []  # nothing ran


def without_extras(tmp_path):
    """A site-packages of links to this one's entries, less every distribution a zoo extra brings: what
    `pip install zoo` alone would give (the extras' own dependencies stay, which only makes the check kinder)."""
    import re
    import sysconfig

    extras = {re.match(r"[A-Za-z0-9_.-]+", r)[0] for r in metadata.requires("zoo") if "extra ==" in r}
    hidden = set()
    for name in extras - {"zoo"}:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        hidden |= {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith("..")}
    site = Path(sysconfig.get_paths()["purelib"])
    base = tmp_path / "site"
    base.mkdir()
    for entry in site.iterdir():
        if entry.name not in hidden:
            (base / entry.name).symlink_to(entry)
    return base


@pytest.mark.slow
def test_a_plain_install_without_extras_runs_vit_cifar_and_names_the_extras(samples, tmp_path, subprocess_env):
    code = f"import sys; sys.path.append({str(without_extras(tmp_path))!r}); from zoo.cli import main; main()"

    def zoo(*args):
        return subprocess.run([sys.executable, "-S", "-c", code, *map(str, args)], capture_output=True, text=True,
                              env=subprocess_env)

    assert zoo("list").returncode == 0
    done = zoo("classify", "vit-cifar", samples / "cat.png", "--top-k", "1")
    assert done.returncode == 0 and done.stdout.splitlines()[1].split()[2] == "cat", done.stderr
    assert zoo("embed", "vit-cifar", samples, "--out", tmp_path / "e.parquet").returncode == 0
    for args, extra in ((["classify", "deit-tiny"], "timm"), (["describe", "florence-2-base"], "vlm"),
                        (["bench", "vit-cifar", "--plot", tmp_path / "b.png"], "plot")):
        done = zoo(*args, samples / "cat.png") if args[0] != "bench" else zoo(*args)
        assert done.returncode == 1 and done.stderr.endswith(f"pip install 'zoo[{extra}]'\n"), done.stderr


def test_a_reader_that_goes_away_ends_the_output_quietly(subprocess_env):
    """zoo info deit-tiny | head -1: no 'Error: Broken pipe.' and no traceback, the exit status of SIGPIPE."""
    reader = subprocess.Popen([sys.executable, "-m", "zoo", "info", "deit-tiny"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=subprocess_env)
    reader.stdout.close()  # before zoo writes a line
    assert reader.wait() == 141 and reader.stderr.read() == b""


def test_probe_and_eval_print_no_progress_bars_outside_a_terminal():
    # A log or a GPU job's captured output would fill with bar redraws; the summary line is what it needs.
    result = zoo_cli("probe", "vit-cifar", "--dataset", "cifar10-sample", "--limit", 20, "--test-limit", 20,
                     "--epochs", 2)
    assert result.exit_code == 0, result.output
    assert "vit-cifar+cifar10-sample: linear top-1" in result.stdout and result.stderr == ""
    result = zoo_cli("eval", "vit-cifar+cifar10-sample", "--dataset", "cifar10-sample")
    assert result.exit_code == 0 and "top-1" in result.stdout and result.stderr == ""


def test_a_bulk_run_replaces_results_only_with_force(samples, tmp_path):
    out = tmp_path / "p.jsonl"
    assert zoo_cli("classify", "vit-cifar", samples / "cat.png", "--out", out).exit_code == 0
    result = zoo_cli("classify", "vit-cifar", samples / "dog.png", "--out", out)
    assert result.exit_code == 1 and result.stderr == (f"Error: {out} holds results already: pass --resume to add only "
                                                       "what it lacks, --force to replace it, or choose another --out.\n")
    assert zoo_cli("classify", "vit-cifar", samples / "dog.png", "--out", out, "--force").exit_code == 0
    assert json.loads(out.read_text())["input"] == str(samples / "dog.png")
    result = zoo_cli("classify", "vit-cifar", samples / "dog.png", "--force")
    assert result.exit_code == 1 and "--force applies to a bulk run into a file: add --out" in result.stderr


def test_the_runtime_options_of_zoo_load_are_the_clis_too(samples, florence2_tiny, monkeypatch):
    """--compile, --workers, --attention and --device-map reach zoo.load, which refuses what a model cannot take."""
    from zoo import api

    calls, load = [], api.load

    def spy(*args, **kwargs):
        calls.append((kwargs, load(*args, **kwargs)))
        return calls[-1][1]

    monkeypatch.setattr(api, "load", spy)
    result = zoo_cli("describe", "florence-2-base", samples / "cat.png", "--weights", florence2_tiny,
                     "--max-new-tokens", 2, "--compile", "--workers", 1, "--attention", "eager", "--device-map", "auto")
    assert result.exit_code == 0, result.output
    [(given, model)] = calls
    assert given["device_map"] == "auto" and given["compile"] is True
    assert (model.workers, model.attention, model.model.generation_config.cache_implementation) == (1, "eager", "static")
    refused = zoo_cli("classify", "vit-cifar", samples / "cat.png", "--device-map", "auto")
    assert refused.exit_code == 1 and refused.output.startswith("Error: vit-cifar runs on one device")
