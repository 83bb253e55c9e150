"""The documented examples run as a user would run them."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

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
    for code, comment in readme_lines():
        value = run_line(code, names)
        if (pattern := shown_value(comment)) is not None:
            shown.append(code)
            assert re.fullmatch(pattern, repr(value)), f"README: {code} gives {value!r}"
    assert len(shown) == 3  # classify, embed, list_models
    assert [(row["model"], row["status"]) for row in value] == [("vit-cifar", "ok"), ("deit-tiny", "ok")]
    assert repr(value).split()[:3] == ["MODEL", "PROTOCOL", "TOP1"]  # compare's table, as a REPL shows it


def readme_lines():
    """(code, comment) for each line of the README's first Python block."""
    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    for line in block.splitlines():
        code, _, comment = line.partition("  #")
        if code.strip():
            yield code.strip(), comment.strip()


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
