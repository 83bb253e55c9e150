"""The documented examples run as a user would run them."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

import zoo

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_custom_backbone_example_runs(subprocess_env):
    env = subprocess_env
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "custom_backbone.py")], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["code", "yaml", "probe", "probe model"]
    assert "(1, 16)" in lines[0] and "(1, 512)" in lines[1] and "my-resnet18+cifar10-sample" in lines[2]


@pytest.mark.slow
def test_the_readme_example_gives_what_its_comments_show(hub, monkeypatch, tmp_path):
    """The README's first Python block, line by line from the repository root, deit-tiny downloaded from a local
    hub (random weights at its real size): a comment that reads as a value is what its line gives, '...' standing
    for the rest and a number for its first digits."""
    torch.manual_seed(0)
    save_file(timm.create_model("deit_tiny_patch16_224.fb_in1k").state_dict(), tmp_path / "deit.safetensors")
    hub.push("timm/deit_tiny_patch16_224.fb_in1k", {"model.safetensors": (tmp_path / "deit.safetensors").read_bytes()})
    monkeypatch.chdir(ROOT)
    names, shown = {}, []
    for code, comment in python_lines(ROOT / "README.md"):
        value = run_line(code, names)
        if (pattern := shown_value(comment)) is not None:
            shown.append(code)
            assert re.fullmatch(pattern, repr(value)), f"README: {code} gives {value!r}"
    assert len(shown) == 3  # classify, embed, list_models
    assert [(row["model"], row["status"]) for row in value] == [("vit-cifar", "ok"), ("deit-tiny", "ok")]
    assert repr(value).split()[:3] == ["MODEL", "PROTOCOL", "TOP1"]  # compare's table, as a REPL shows it


def python_lines(page):
    """(code, comment) for each statement of a page's first Python block (one spanning lines is joined)."""
    block = re.search(r"```python\n(.*?)```", page.read_text(), re.S).group(1)
    code = comment = ""
    for line in block.splitlines():
        part, _, said = line.partition("  #")
        code, comment = f"{code} {part.strip()}".strip(), said.strip() or comment
        if code and all(code.count(a) == code.count(b) for a, b in ("()", "[]", "{}")):
            yield code, comment
            code = comment = ""


@pytest.mark.slow
@pytest.mark.parametrize("page, checkpoint", [("florence2.md", "florence2_tiny"), ("qwen2vl.md", "qwen2vl_tiny")])
def test_every_call_a_plugin_page_shows_runs(page, checkpoint, request, samples, write_clip, tmp_path, monkeypatch):
    """docs/plugins/PAGE's example, each call as written, on a tiny random checkpoint of the model (so only that the
    calls work is checked, not what the answers say)."""
    weights = request.getfixturevalue(checkpoint)
    shutil.copy(samples / "cat.png", tmp_path / "a.jpg")
    shutil.copy(samples / "dog.png", tmp_path / "b.jpg")
    write_clip(tmp_path / "clip.mp4")
    monkeypatch.chdir(tmp_path)
    names, ran = {"zoo": zoo}, 0
    for code, _ in python_lines(ROOT / "docs" / "plugins" / page):
        tiny = re.sub(r'zoo\.load\(("[^"]+")\)', lambda m: f"zoo.load({m[1]}, weights={str(weights)!r})", code)
        run_line(tiny, names)
        ran += 1
    assert ran >= 7  # (offline, a load without the tiny checkpoint would have failed)


def run_line(code, names):
    """An expression's value; a statement (an import, an assignment) runs and gives None."""
    try:
        expression = compile(code, "README.md", "eval")
    except SyntaxError:
        exec(code, names)
        return None
    return eval(expression, names)


def shown_value(comment):
    """A comment that reads as a Python value, as a pattern for the value's repr; None for a comment in words."""
    try:
        ast.parse(comment, mode="eval")
    except SyntaxError:
        return None
    pattern = re.escape(comment).replace(re.escape("..."), ".*")
    return re.sub(r"\d+\\\.\d+", lambda number: number.group() + r"\d*", pattern)
