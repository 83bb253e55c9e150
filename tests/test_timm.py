"""The timm plugin: every timm-backed record loads and matches timm's own forward pass."""

import numpy as np
import pytest
import timm
import torch
from packaging.version import Version
from PIL import Image
from safetensors.torch import save_file
from timm.data import create_transform, resolve_data_config
from zoo_timm import preprocess_of

import zoo
from zoo.records import CROP_MODES, Preprocess
from zoo.vision import eval_transform

TINY = {"depth": 1, "embed_dim": 32, "num_heads": 2}
TIMM_RECORDS = [n for n in zoo.list_models(plugin="timm")]


def write_weights(arch, tmp_path, **kwargs):
    torch.manual_seed(0)
    module = timm.create_model(arch, pretrained=False, **kwargs).eval()
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    return module, path


def test_records_hold_only_what_differs_from_timm():
    """Built-in timm records carry no copy of timm's preprocessing, labels or weights location."""
    for name in TIMM_RECORDS:
        record = zoo.info(name)
        cfg = timm.models.get_pretrained_cfg(record.architecture)
        assert record.preprocess is None and record.weights is None and record.labels is None, name
        assert cfg.hf_hub_id, name
        assert ("classify" in record.tasks) == bool(cfg.num_classes), name


def test_weights_location_comes_from_timm(tmp_path):
    """Offline, the resolver names the hub repository timm's pretrained config gives."""
    with pytest.raises(zoo.MissingWeights, match="timm/beit_base_patch16_224.in22k_ft_in22k_in1k"):
        zoo.load("beit-base")


def test_a_records_preprocess_wins(tmp_path, registry_file, samples):
    _, path = write_weights("deit_tiny_patch16_224.fb_in1k", tmp_path, **TINY, img_size=64)
    registry_file(f"""
- name: small-deit
  plugin: timm
  architecture: deit_tiny_patch16_224.fb_in1k
  model_args: {{img_size: 64, depth: 1, embed_dim: 32, num_heads: 2}}
  weights: {{path: {path}}}
  preprocess: {{input_size: 64, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], crop_pct: 1.0}}
  tasks: [classify, embed]
""")
    model = zoo.load("small-deit")
    assert model.preprocess.input_size == (3, 64, 64) and model.preprocess.mean == (0.5, 0.5, 0.5)
    assert model.prepare(samples / "cat.png").shape == (3, 64, 64)


@pytest.mark.parametrize("name", TIMM_RECORDS)
def test_contract_every_timm_record(name, tmp_path, samples):
    """Load with locally written (tiny) weights; outputs equal timm's own forward on timm's transform."""
    record = zoo.info(name)
    module, path = write_weights(record.architecture, tmp_path, **TINY)
    model = zoo.load(name, weights=path, model_args=TINY)
    assert model.capabilities == frozenset(record.tasks)
    image = Image.open(samples / "dog.png").convert("RGB")
    x = create_transform(**resolve_data_config({}, model=module))(image)[None]
    # zoo's input tensor is timm's: uint8 resize and crop, then normalisation on the device.
    assert torch.allclose(model.normalise(model.collate([model.prepare(image)])), x, atol=1e-5)
    with torch.inference_mode():
        expected_features = module.forward_head(module.forward_features(x), pre_logits=True)
        expected_logits = module(x)
    assert torch.allclose(model.embed([image, image]), expected_features.expand(2, -1), atol=1e-4)
    if "classify" in record.tasks:
        top = model.classify(image, top_k=3)[0]
        probs = expected_logits.softmax(-1)[0]
        assert [p.index for p in top] == probs.topk(3).indices.tolist()
        assert abs(top[0].score - probs.max().item()) < 1e-4
        assert len(model.labels) == 1000 and top[0].label == model.labels[top[0].index]
    else:
        with pytest.raises(zoo.UnsupportedCapability, match="zoo probe"):
            model.classify(image)


def test_decoding_and_batching_run_no_torch_operator_but_the_batchs_allocation(tmp_path, samples):
    """The decoding threads keep every core busy, and a torch operator that shares its work over torch's thread
    pool waits for its slowest thread: on 2 cores, stacking a batch took up to 2 s instead of 0.03 s. So prepare
    (in the decoding threads) and collate (on the model's thread) copy with numpy; the batch is timm's input."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Operators(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.add(func.__name__)
            return func(*args, **(kwargs or {}))

    module, path = write_weights("deit_tiny_patch16_224.fb_in1k", tmp_path, **TINY)
    model = zoo.load("deit-tiny", weights=path, model_args=TINY)
    image = Image.open(samples / "dog.png").convert("RGB")
    with Operators() as operators:
        batch = model.collate([model.prepare(samples / "cat.png"), model.prepare(image)])
    # (lift_fresh and detach are how a tensor made from a numpy array enters a dispatch mode: no work)
    assert operators.seen == {"empty.memory_format", "lift_fresh.default", "detach.default"}
    timms = create_transform(**resolve_data_config({}, model=module), normalize=False)
    assert batch.is_contiguous()
    assert torch.equal(batch, torch.stack([timms(Image.open(samples / "cat.png").convert("RGB")), timms(image)]))
    cifar = zoo.load("vit-cifar")  # arrays at the model's input size skip PIL
    arrays = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    arrays.flags.writeable = False
    with Operators() as operators:
        batch = cifar.collate([cifar.prepare(a) for a in arrays])
    assert operators.seen == {"empty.memory_format", "lift_fresh.default", "detach.default"}
    assert torch.equal(batch, torch.from_numpy(arrays.copy()).permute(0, 3, 1, 2))


@pytest.mark.parametrize("crop_mode", CROP_MODES)
def test_preprocessing_is_timms_in_every_crop_mode(crop_mode):
    """zoo's uint8 input is timm's eval transform's, pixel for pixel, whatever the image's shape and the model's
    input size (square or not), crop percentage and interpolation."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in
              [(480, 640), (500, 300), (20, 30), (100, 100), (127, 333)]]
    for size, crop_pct, interpolation in [((224, 224), 0.875, "bicubic"), ((224, 224), 1.0, "bilinear"),
                                          ((160, 224), 0.9, "bicubic"), ((224, 160), 0.95, "bilinear")]:
        mean = (0.48145466, 0.4578275, 0.40821073)
        ours = eval_transform(Preprocess(input_size=(3, *size), mean=mean, interpolation=interpolation,
                                         crop_pct=crop_pct, crop_mode=crop_mode))
        theirs = create_transform((3, *size), crop_pct=crop_pct, crop_mode=crop_mode, interpolation=interpolation,
                                  mean=mean, normalize=False)
        if crop_mode == "center" and size[0] != size[1] and Version(timm.__version__) < Version("1.0.31"):
            continue  # timm resized these bilinearly whatever the model's interpolation until 1.0.31: zoo has the fix
        for image in images:
            assert torch.equal(ours(image), theirs(image)), (size, crop_pct, image.size)


def test_crop_mode_comes_from_timms_config():
    squash = timm.models.get_pretrained_cfg("convnext_base.fb_in22k_ft_in1k_384")
    assert squash.crop_mode == "squash"
    assert preprocess_of(resolve_data_config(pretrained_cfg=squash.to_dict())).crop_mode == "squash"
    assert preprocess_of(resolve_data_config({}, model=timm.create_model("test_vit", pretrained=False))).crop_mode \
        == "center"


@pytest.mark.parametrize("options", [{"num_classes": 0}, {"num_classes": 10}, {"img_size": 64}])
def test_load_options_adapt_the_weights_as_timm_does(options, tmp_path, samples):
    """zoo.load(name, num_classes=..., img_size=...) builds what timm.create_model(pretrained=True, ...) builds from
    the same weights file: the head dropped or new, the position embeddings resampled to the new size."""
    _, path = write_weights("deit_tiny_patch16_224.fb_in1k", tmp_path, **TINY)
    model = zoo.load("deit-tiny", weights=path, model_args=TINY, **options)
    reference = timm.create_model("deit_tiny_patch16_224.fb_in1k", pretrained=True, **TINY, **options,
                                  pretrained_cfg_overlay={"file": str(path)}).eval()
    config = resolve_data_config({"img_size": options["img_size"]} if "img_size" in options else {}, model=reference)
    assert model.preprocess.input_size == config["input_size"]
    image = Image.open(samples / "dog.png").convert("RGB")
    with torch.inference_mode():
        expected = reference.forward_head(reference.forward_features(create_transform(**config)(image)[None]),
                                          pre_logits=True)
    assert torch.allclose(model.embed(image), expected, atol=1e-5)
    assert model.capabilities == ({"classify", "embed"} if "img_size" in options else {"embed"})
    if options.get("num_classes") == 10:
        with pytest.raises(zoo.UnsupportedCapability, match="head has 10 classes but its record names no labels"):
            model.classify(image)


def test_attention_eager_or_sdpa_gives_the_same_features(tmp_path, samples):
    _, path = write_weights("deit_tiny_patch16_224.fb_in1k", tmp_path, **TINY)
    eager = zoo.load("deit-tiny", weights=path, model_args=TINY, attention="eager")
    sdpa = zoo.load("deit-tiny", weights=path, model_args=TINY, attention="sdpa")
    layers = [m for m in eager.module.modules() if hasattr(m, "fused_attn")]
    assert eager.attention == "eager" and layers and not any(m.fused_attn for m in layers)
    assert sdpa.attention == "sdpa" and all(m.fused_attn for m in sdpa.module.modules() if hasattr(m, "fused_attn"))
    assert torch.allclose(eager.embed(samples / "cat.png"), sdpa.embed(samples / "cat.png"), atol=1e-5)


def test_patch_tokens_drop_prefix_tokens(tmp_path, samples):
    _, path = write_weights("deit_tiny_distilled_patch16_224.fb_in1k", tmp_path, **TINY)
    model = zoo.load("deit-tiny-distilled", weights=path, model_args=TINY)
    tokens = model.embed(samples / "cat.png", patch_tokens=True)
    assert tokens.shape == (1, 196, 32)  # 14x14 patches, CLS and distillation tokens dropped


def test_any_timm_model_by_prefix(tmp_path, samples):
    module, path = write_weights("test_vit.r160_in1k", tmp_path)
    record = zoo.info("timm:test_vit.r160_in1k")
    assert record.architecture == "test_vit.r160_in1k" and record.tasks == ("classify", "embed")
    model = zoo.load("timm:test_vit.r160_in1k", weights=path)
    assert model.preprocess.input_size == (3, 160, 160)
    assert model.classify(samples / "cat.png", top_k=1)[0][0].label in model.labels
    with pytest.raises(zoo.UnknownModel, match="timm:test_vit"):
        zoo.info("timm:test_vitt")


def test_closed_set_labels_argument(tmp_path, samples):
    _, path = write_weights("deit_tiny_patch16_224.fb_in1k", tmp_path, **TINY)
    model = zoo.load("deit-tiny", weights=path, model_args=TINY)
    labels = ["tabby", "goldfish"]
    result = model.classify(samples / "cat.png", labels=labels)[0]
    assert {p.label for p in result} == set(labels) and abs(sum(p.score for p in result) - 1) < 1e-5
    assert all(labels[p.index] == p.label for p in result)  # index: the position in the labels scored
    with pytest.raises(zoo.BadInput, match="closed-set"):
        model.classify(samples / "cat.png", labels=["spaceship"])


def test_offline_without_weights_says_how_to_provide_them():
    with pytest.raises(zoo.MissingWeights, match="timm/deit_tiny_patch16_224.fb_in1k.*weights=PATH"):
        zoo.load("deit-tiny")


def test_bad_inputs_through_a_model(tmp_path):
    _, path = write_weights("deit_tiny_patch16_224.fb_in1k", tmp_path, **TINY)
    model = zoo.load("deit-tiny", weights=path, model_args=TINY)
    with pytest.raises(zoo.BadInput, match="not found"):
        model.embed(tmp_path / "missing.jpg")
    with pytest.raises(zoo.UnsupportedCapability, match="cannot describe.*florence-2-base"):
        model.describe(tmp_path / "x.png")


@pytest.mark.parametrize("model_args, message", [
    ({"depth": "two"}, "cannot build deit_tiny_patch16_224.fb_in1k from {'depth': 'two'"),
    ({"colour": "red"}, "unexpected keyword argument 'colour'"),
])
def test_model_args_timm_refuses_are_one_line(tmp_path, model_args, message):
    _, path = write_weights("deit_tiny_patch16_224.fb_in1k", tmp_path, **TINY)
    with pytest.raises(zoo.BadInput, match=message):
        zoo.load("deit-tiny", weights=path, model_args=model_args)


def test_out_of_memory_halves_the_batch_and_keeps_every_result(tmp_path, samples, monkeypatch):
    _, path = write_weights("deit_tiny_patch16_224.fb_in1k", tmp_path, **TINY)
    model = zoo.load("deit-tiny", weights=path, batch_size=8, model_args=TINY)
    inputs = [samples / "cat.png"] * 6
    expected = model.embed(inputs)
    seen, embed_batch = [], model.embed_batch

    def embed_with_a_memory_limit(pixels, options):
        seen.append(len(pixels))
        if len(pixels) > 2:  # what torch raises when a CUDA allocation fails
            raise torch.OutOfMemoryError("CUDA out of memory")
        return embed_batch(pixels, options)

    monkeypatch.setattr(model, "embed_batch", embed_with_a_memory_limit)
    assert torch.allclose(model.embed(inputs), expected, atol=1e-5)
    assert seen == [6, 3, 2, 1, 3, 2, 1]  # 6 fails, each half of 3 fails, then 2 + 1 twice
    assert model.batch_size == 2
