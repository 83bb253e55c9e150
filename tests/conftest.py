import atexit
import os
import pickle
import shutil
import tempfile

# Before any library reads them at import: the caches of a test run (Hugging Face, matplotlib's font cache, Ray,
# anything else that follows XDG) live in one temp dir, never in the home directory, removed when the run ends.
RUN_DIR = tempfile.mkdtemp(prefix="zoo-tests-")
atexit.register(shutil.rmtree, RUN_DIR, ignore_errors=True)
os.environ["HF_HOME"] = os.path.join(RUN_DIR, "hf")
os.environ["MPLCONFIGDIR"] = os.path.join(RUN_DIR, "matplotlib")
os.environ["XDG_CACHE_HOME"] = os.path.join(RUN_DIR, "cache")
os.environ["RAY_TMPDIR"] = os.path.join(RUN_DIR, "ray")  # a local Ray cluster's session logs and sockets
# torch.compile's kernels: one cache for the run, so the tests (and their subprocesses) that compile the same network
# build it once, and never from an earlier run's cache.
os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(RUN_DIR, "inductor")
# Under pytest-xdist (-n), the workers share the cores: torch's threads in each would otherwise oversubscribe them.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // WORKERS)))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from zoo import plugins, registry  # noqa: E402
from zoo.datasets import cifar10_sample  # noqa: E402
from zoo.testing import write_video  # noqa: E402

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


@pytest.fixture
def subprocess_env(isolated, tmp_path):
    """The environment for a zoo subprocess: this test's ZOO_HOME and HF_HOME, offline, the source tree, and a
    temporary folder of its own (torchrun leaves a log folder in it; in /tmp they piled up run after run)."""
    scratch = tmp_path / "subprocess-tmp"
    scratch.mkdir(exist_ok=True)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]), "TMPDIR": str(scratch)}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test gets its own zoo home, no network, no user registry files, fresh plugins."""
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo-home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("ZOO_REGISTRY", raising=False)
    monkeypatch.delenv("ZOO_PLUGINS", raising=False)
    plugins.reset()
    registry.reset()
    yield
    plugins.reset()
    registry.reset()


@pytest.fixture
def hub(monkeypatch):
    """A local Hugging Face hub on 127.0.0.1 (tests/localhub.py), online for this test."""
    import huggingface_hub.constants
    from localhub import Hub

    hub = Hub()
    for name in ("ZOO_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    yield hub
    hub.close()


@pytest.fixture
def samples():
    return SAMPLES


@pytest.fixture
def write_clip():
    """Writes a three-second clip at 4 fps, from black to light grey, to the path it is given; returns the path."""
    return lambda path: write_video(path, (np.full((32, 32, 3), 20 * i, np.uint8) for i in range(12)), fps=4)


@pytest.fixture(scope="session")
def florence2_tiny(tmp_path_factory):
    """A tiny random Florence-2 checkpoint folder, as save_pretrained writes it."""
    from zoo_florence2 import testing

    return testing.florence2(tmp_path_factory.mktemp("florence2"))


@pytest.fixture(scope="session")
def qwen2vl_tiny(tmp_path_factory):
    """A tiny random Qwen2-VL checkpoint folder, as save_pretrained writes it."""
    from zoo_qwen2vl import testing

    return testing.qwen2_vl(tmp_path_factory.mktemp("qwen2vl"))


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory):
    """A real CIFAR-10 folder in the python layout, made of the bundled sample's 200 images."""
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    train, test = cifar10_sample(split="train"), cifar10_sample(split="test")

    def write(name, images, labels):
        data = np.stack(images).transpose(0, 3, 1, 2).reshape(len(images), -1)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": list(labels), "batch_label": name}, f, protocol=2)

    for i in range(5):
        write(f"data_batch_{i + 1}", train.items[i * 20:(i + 1) * 20], train.targets[i * 20:(i + 1) * 20])
    write("test_batch", test.items, test.targets)
    return root


@pytest.fixture
def registry_file(tmp_path, monkeypatch):
    """Write a YAML registry and name it in ZOO_REGISTRY."""

    def make(text, name="extra.yaml"):
        path = tmp_path / name
        path.write_text(text)
        monkeypatch.setenv("ZOO_REGISTRY", str(path))
        registry.reset()
        return path

    return make
