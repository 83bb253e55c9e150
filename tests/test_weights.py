"""Weight resolution: explicit, cache, network only when allowed; sha256; never unpickle objects."""

import hashlib

import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo.weights import load_state_dict, resolve


def record(**weights):
    return zoo.register({"name": "w", "plugin": "vit_cifar", "architecture": "vit", "weights": weights}, override=True)


@pytest.fixture
def tensor_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.arange(4.0)}, str(path))
    return path


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_explicit_weights_win_and_must_exist(tensor_file, tmp_path):
    assert resolve(record(hf="a/b"), tensor_file) == tensor_file
    with pytest.raises(zoo.MissingWeights, match="does not exist"):
        resolve(record(hf="a/b"), tmp_path / "nope")


def test_url_download_is_verified_and_cached(tensor_file, monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    r = record(url=tensor_file.as_uri(), sha256=sha(tensor_file))
    path = resolve(r)
    assert path.parent.parent == zoo.weights.home() / "cache" and path.read_bytes() == tensor_file.read_bytes()
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    assert resolve(r) == path  # served from the cache, offline


def test_sha256_mismatch_is_refused_and_nothing_is_cached(tensor_file, monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(zoo.UnsafeWeights, match="sha256 mismatch"):
        resolve(record(url=tensor_file.as_uri(), sha256="0" * 64))
    assert not any(p.is_file() for p in (zoo.weights.home() / "cache").rglob("*"))


def test_local_path_with_wrong_sha256_is_refused(tensor_file):
    with pytest.raises(zoo.UnsafeWeights):
        resolve(record(path=str(tensor_file), sha256="0" * 64))
    assert resolve(record(path=str(tensor_file), sha256=sha(tensor_file))) == tensor_file


def test_offline_errors_name_the_model_where_it_looked_and_the_fix(tensor_file):
    with pytest.raises(zoo.MissingWeights) as e:
        resolve(record(url="https://example.invalid/m.safetensors", sha256=sha(tensor_file)))
    assert "'w'" in str(e.value) and "cache" in str(e.value) and "weights=PATH" in str(e.value)
    with pytest.raises(zoo.MissingWeights) as e:
        resolve(record(hf="acme/missing", revision="abc"))
    assert "acme/missing@abc" in str(e.value) and "Hugging Face cache" in str(e.value) and "weights=PATH" in str(e.value)
    with pytest.raises(zoo.MissingWeights):
        zoo.load("deit-tiny")  # a real record, offline, no cache


def test_hf_cache_is_used_offline(tmp_path, monkeypatch, tensor_file):
    """A snapshot already in the Hugging Face cache is found without the network."""
    cache = tmp_path / "hf"
    snapshot = cache / "models--acme--net" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(tensor_file.read_bytes())
    (cache / "models--acme--net" / "refs").mkdir()
    (cache / "models--acme--net" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))  # read at each call, not at import
    path = resolve(record(hf="acme/net"))
    assert (path / "model.safetensors").exists()


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole pickled module, not a state dict
    with pytest.raises(zoo.UnsafeWeights, match="never unpickles"):
        load_state_dict(path)


def test_plain_state_dict_checkpoints_load_with_weights_only(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}}, path)
    assert torch.equal(load_state_dict(path)["w"], torch.ones(2))


def test_directory_prefers_safetensors(tmp_path, tensor_file):
    torch.save({"w": torch.zeros(4)}, tmp_path / "pytorch_model.bin")
    assert torch.equal(load_state_dict(tmp_path)["w"], torch.arange(4.0))
    (tmp_path / "empty").mkdir()
    with pytest.raises(zoo.MissingWeights, match="No weights file"):
        load_state_dict(tmp_path / "empty")
