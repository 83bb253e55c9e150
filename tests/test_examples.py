"""The documented examples run as a user would run them."""

import subprocess
import sys
from pathlib import Path

import pytest

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
