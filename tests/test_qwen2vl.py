"""Qwen2-VL on a tiny random model with an offline tokenizer, loaded through the real weights path."""

import re

import numpy as np
import pytest
import torch
from qwen_vl_utils import process_vision_info
from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

import zoo
from zoo.runtime import torch_release
from zoo.testing import write_video
from zoo_qwen2vl import CLASSIFY_PROMPT


@pytest.fixture
def tiny(qwen2vl_tiny):
    return qwen2vl_tiny


@pytest.fixture
def model(tiny):
    return zoo.load("qwen2-vl-2b-instruct", weights=tiny, batch_size=2, min_pixels=28 * 28 * 4,
                    max_pixels=28 * 28 * 16)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A real 2-second mp4 written with PyAV."""
    frames = [np.zeros((48, 64, 3), np.uint8) for _ in range(16)]
    for i, frame in enumerate(frames):
        frame[..., i % 3] = 40 + 10 * i
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames)


def plain_generate(tiny, messages, max_new_tokens):
    """The original design's usage: apply_chat_template + process_vision_info + generate."""
    plain = Qwen2VLForConditionalGeneration.from_pretrained(tiny).eval()
    processor = AutoProcessor.from_pretrained(tiny)
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    images, videos = process_vision_info(messages)
    inputs = processor(text=[text], images=images, videos=videos, padding=True, return_tensors="pt")
    ids = plain.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.batch_decode(ids[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0].strip()


def test_describe_equals_plain_generate(tiny, model, samples):
    image = str(samples / "cat.png")
    messages = [{"role": "user", "content": [
        {"type": "image", "image": image, "min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 16},
        {"type": "text", "text": "How many dogs do you see? Reply in Chinese."}]}]
    expected = plain_generate(tiny, messages, 8)
    assert model.describe(image, prompt="How many dogs do you see? Reply in Chinese.", max_new_tokens=8) == [expected]
    assert model.describe(messages, max_new_tokens=8) == [expected]  # the original chat format, as it is
    messages[0]["content"][0]["image"] = f"file://{image}"  # the model card's form of a local path
    assert model.describe(messages, max_new_tokens=8) == [plain_generate(tiny, messages, 8)] == [expected]


def test_batched_with_left_padding_equals_one_by_one(model, samples):
    paths = [samples / "cat.png", samples / "dog.png", samples / "ship.png"]
    prompts = ["Describe this image.", "What is it?", "How many dogs do you see? Reply in Chinese."]
    batch = model.describe(paths, prompt=prompts, max_new_tokens=6)
    assert batch == [model.describe(p, prompt=q, max_new_tokens=6)[0] for p, q in zip(paths, prompts)]


def test_several_images_in_one_message(tiny, model, samples):
    pair = [str(samples / "cat.png"), str(samples / "dog.png")]
    messages = [{"role": "user", "content": [
        *({"type": "image", "image": p, "min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 16} for p in pair),
        {"type": "text", "text": "Compare them."}]}]
    assert model.describe([pair], prompt="Compare them.", max_new_tokens=6) == [plain_generate(tiny, messages, 6)]


def test_video_goes_through_pyav(tiny, model, clip):
    from zoo_qwen2vl.video import read_video

    frames, metadata, fps = read_video({"video": str(clip), "nframes": 4})
    assert frames.shape == (4, 3, 48, 64) and metadata["frames_indices"].tolist() == [0, 5, 10, 15]
    assert fps == pytest.approx(2.0)
    frames, _, _ = read_video({"video": str(clip), "fps": 2.0})
    assert len(frames) == 4  # 2 s at 2 frames per second
    text = model.describe(clip, max_new_tokens=6)
    assert len(text) == 1 and isinstance(text[0], str)
    messages = [{"role": "user", "content": [{"type": "video", "video": str(clip)},
                                             {"type": "text", "text": "Describe this video."}]}]
    assert model.describe(messages, max_new_tokens=6) == text
    local = [{"role": "user", "content": [{"type": "video", "video": f"file://{clip}"}]}]  # as the model card writes it
    assert model.describe(local, max_new_tokens=6) == model.describe([{"role": "user", "content": [
        {"type": "video", "video": str(clip)}]}], max_new_tokens=6)


def test_qwen_vl_utils_used_outside_zoo_keeps_its_own_video_reader(model, clip, monkeypatch):
    """zoo reads videos with its reader only inside its own calls: a user's qwen-vl-utils code beside it is untouched."""
    import torchvision
    from qwen_vl_utils import vision_process

    def official(*args, **kwargs):
        raise RuntimeError("torchvision's read_video was called")

    monkeypatch.setattr(torchvision.io, "read_video", official, raising=False)
    with pytest.raises(RuntimeError, match="torchvision's read_video was called"):
        vision_process.VIDEO_READER_BACKENDS["torchvision"]({"video": str(clip)})
    assert isinstance(model.describe(clip, max_new_tokens=2)[0], str)  # zoo's own reader, all the same


@pytest.mark.parametrize("medium", ["image", "video"])
def test_classify_equals_brute_force_per_label(model, samples, write_clip, tmp_path, medium):
    labels = ["cat", "dog", "a red truck", "airplane"]
    image = samples / "frog.png" if medium == "image" else write_clip(tmp_path / "clip.mp4")
    tok = model.processor.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    question = CLASSIFY_PROMPT.format(labels=", ".join(labels), medium=medium)  # the video's question says video
    assert [q.prompt for q in model.items([image], model.call_options("classify", {"labels": labels}))] == [question]
    batch = model.model_inputs(image, prompt=question)
    prefix = batch["input_ids"].shape[1]
    totals = []
    for label in labels:  # one full forward pass per label, no shared cache
        seq = tok(label, add_special_tokens=False).input_ids + [end]
        full = dict(batch)
        full["input_ids"] = torch.cat([batch["input_ids"], torch.tensor([seq])], 1)
        full["attention_mask"] = torch.ones_like(full["input_ids"])
        if "mm_token_type_ids" in batch:  # which tokens are image tokens, from transformers 5.1 on
            full["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], torch.zeros(1, len(seq), dtype=torch.int)],
                                                  1)
        with torch.no_grad():
            logits = model.model(**full).logits[0]
        totals.append(sum(torch.log_softmax(logits[prefix - 1 + i], -1)[t].item() for i, t in enumerate(seq)))
    expected = torch.softmax(torch.tensor(totals), 0)
    result = model.classify(image, labels=labels, top_k=4)[0]
    for p in result:
        assert p.score == pytest.approx(expected[labels.index(p.label)].item(), abs=1e-4)
    assert [p.label for p in result] == [labels[i] for i in expected.argsort(descending=True)]
    # One prefill for a batch, left-padded where the prompts differ in length (a video's is longer than an image's).
    batch = model.classify([image, samples / "cat.png"], labels=labels, top_k=4)
    for together, alone in zip(batch, [result, model.classify(samples / "cat.png", labels=labels, top_k=4)[0]]):
        assert [p.label for p in together] == [p.label for p in alone]
        assert [p.score for p in together] == pytest.approx([p.score for p in alone], abs=1e-4)


def test_static_cache_decodes_the_same_tokens(tiny, model, samples):
    fast = zoo.load("qwen2-vl-2b-instruct", weights=tiny, static_cache=True, min_pixels=28 * 28 * 4,
                    max_pixels=28 * 28 * 16)
    assert fast.model.generation_config.cache_implementation == "static"
    paths = [samples / "cat.png", samples / "dog.png"]
    assert fast.describe(paths, max_new_tokens=6) == model.describe(paths, max_new_tokens=6)


@pytest.mark.slow
@pytest.mark.skipif(torch_release() < (2, 5), reason="compile=True needs torch 2.5 (the next test: its refusal)")
def test_compile_lets_generate_compile_the_decoding_step_only(tiny, model, samples):
    """compile=True is transformers' compiled generation: a static cache, the decoding step compiled by generate
    (which does so on accelerators; forced here on the CPU), the prefill eager. zoo used to compile the whole
    forward too, which crashed on an H100 (CUDA graphs of the prefill overwrote the cache)."""
    from transformers import CompileConfig

    compiled = zoo.load("qwen2-vl-2b-instruct", weights=tiny, compile=True, batch_size=2, min_pixels=28 * 28 * 4,
                        max_pixels=28 * 28 * 16)
    config = compiled.model.generation_config
    assert config.cache_implementation == "static" and not config.disable_compile
    assert model.model.generation_config.disable_compile  # zoo compiles only when asked
    config.compile_config = CompileConfig()
    config.compile_config._compile_all_devices = True
    paths = [samples / "cat.png", samples / "dog.png"]
    assert compiled.describe(paths, max_new_tokens=6) == model.describe(paths, max_new_tokens=6)
    assert hasattr(compiled.model, "_compiled_call") and "forward" not in vars(compiled.model)


def test_compile_on_a_torch_whose_compiler_cannot_trace_qwen2vl_is_one_line_before_any_weights(monkeypatch, tmp_path):
    """torch 2.4's dynamo fails deep inside generate() on the config's rope_parameters dict (transformers 5.0)."""
    monkeypatch.setattr(torch, "__version__", "2.4.1+cpu")
    with pytest.raises(zoo.BadInput, match=r"compile=True needs torch >= 2\.5.*\(this is torch 2\.4\)"):
        zoo.load("qwen2-vl-2b-instruct", weights=tmp_path / "not-read", compile=True)
    with pytest.raises(zoo.MissingWeights):  # without compile, the same load goes on to its weights
        zoo.load("qwen2-vl-2b-instruct", weights=tmp_path / "not-read")


def test_stream_yields_the_same_text(model, samples):
    streamed = "".join(model.stream_text(samples / "cat.png", max_new_tokens=6)).strip()
    assert streamed == model.describe(samples / "cat.png", max_new_tokens=6)[0]


def test_the_cli_streams_each_input_in_turn(tiny, samples, tmp_path):
    from click.testing import CliRunner

    from zoo.cli import build_cli

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    inputs = [str(samples / "cat.png"), str(broken), str(samples / "dog.png")]
    args = ["describe", "qwen2-vl-2b-instruct", *inputs, "--weights", str(tiny), "--max-new-tokens", "5",
            "-o", "min_pixels=3136", "-o", "max_pixels=12544"]
    plain, streamed = (CliRunner().invoke(build_cli(), [*args, flag]) for flag in ("--no-stream", "--stream"))
    assert plain.exit_code == streamed.exit_code == 1 and f"Error: {broken} is not a readable image" in streamed.stderr
    assert [line.split(": ")[0] for line in streamed.stdout.splitlines()] == inputs[::2]
    assert [" ".join(line.split()) for line in streamed.stdout.splitlines()] == \
        [" ".join(line.split()) for line in plain.stdout.splitlines()]


def test_a_stream_whose_generation_fails_raises_instead_of_waiting_forever(model, samples, monkeypatch):
    import threading

    monkeypatch.setattr(model.model, "generate", lambda **kwargs: 1 / 0)
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(pytest.raises(ZeroDivisionError, list,
                                                                          model.stream_text(samples / "cat.png"))),
                              daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert outcome, "the stream never ended"


def test_budgets_default_to_the_checkpoint_and_a_load_option_sets_them(tiny):
    record = zoo.info("qwen2-vl-2b-instruct")
    assert record.model_args == {} and record.weights.revision == "895c3a49bc3fa70a340399125c650a463535e71c"
    assert zoo.load("qwen2-vl-2b-instruct", weights=tiny).images == {}  # qwen-vl-utils' and the checkpoint's
    assert zoo.load("qwen2-vl-2b-instruct", weights=tiny, max_pixels=3136).images == {"max_pixels": 3136}
    with pytest.raises(zoo.BadInput, match="fps or nframes"):
        zoo.load("qwen2-vl-2b-instruct", weights=tiny, fps=1.0, nframes=4)


def test_bad_inputs(model, samples, tmp_path, caplog):
    with pytest.raises(zoo.BadInput, match="Video file not found"):
        model.describe(tmp_path / "missing.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    with pytest.raises(zoo.BadInput, match="not a readable video"):
        model.describe(corrupt)
    assert "video_reader_backend" not in caplog.text  # qwen-vl-utils' retry notice would repeat zoo's error
    with pytest.raises(zoo.BadInput, match="0 prompts for 1 inputs"):
        model.describe([samples / "cat.png"], prompt=[])
    with pytest.raises(zoo.BadInput, match="2 prompts for 1 inputs"):
        model.describe([samples / "cat.png"], prompt=["a", "b"])
    with pytest.raises(zoo.BadInput, match="No inputs"):
        model.describe([])
    with pytest.raises(zoo.BadInput, match="labels you give"):
        model.classify(samples / "cat.png")
    with pytest.raises(zoo.BadInput, match=re.escape("The prompt or a label: the text holds <|video_pad|>")):
        model.classify(samples / "cat.png", labels=["cat", "<|video_pad|>"])
    with pytest.raises(zoo.BadInput, match="prompt=array"):  # not a prompt, nor one per input
        model.describe(samples / "cat.png", prompt=np.zeros(3))
    with pytest.raises(zoo.BadInput, match="image URLs need the network"):
        model.describe("https://example.com/cat.png")
    with pytest.raises(zoo.BadInput, match="video URLs need the network"):
        model.describe("https://example.com/clip.mp4")
    with pytest.raises(zoo.BadInput, match="not found"):
        model.describe(tmp_path / "missing.png")


CAT = {"type": "image", "image": "samples/cat.png"}


@pytest.mark.parametrize("chat, message", [
    ([{"role": "user", "content": 28}], "message 0: 'content' must be text or a non-empty list of parts"),
    ([{"role": "user", "content": []}], "message 0: 'content' must be"),
    ([{"role": None, "content": "hi"}], "message 0: 'role' must be a name"),
    ([{"role": "<|image_pad|>", "content": "hi"}], "message 0: the text holds <|image_pad|>"),
    ([{"role": "user", "content": [CAT, 1]}], "message 0, part 1: expected a dict"),
    ([{"role": "user", "content": [{"type": "image", "text": "x"}]}], "part 0: an image part needs 'image'"),
    ([{"role": "user", "content": [{"type": "text", "video": None}]}], "a video part needs 'video'"),
    ([{"role": "user", "content": [{"type": "text", "text": 5}]}], "a text part needs 'text', a string"),
    ([{"role": "user", "content": [CAT, {"type": "text", "text": "<|image_pad|> twice"}]}], "holds <|image_pad|>"),
    ([{"role": "user", "content": [{**CAT, "max_pixels": "many"}]}], "max_pixels='many' must be a finite number"),
    ([{"role": "user", "content": [{**CAT, "resized_height": float("nan")}]}], "resized_height=nan"),
    ([{"role": "user", "content": [{**CAT, "min_pixels": 10**7, "max_pixels": 10**6}]}], "is above max_pixels"),
    ([{"role": "user", "content": [{"type": "video", "video": "x.mp4", "video_start": -1}]}], "0 or more"),
])
def test_chats_that_are_not_the_official_format_are_one_line(model, chat, message):
    with pytest.raises(zoo.BadInput, match=re.escape(message)):
        model.describe(chat, max_new_tokens=2)


def test_device_map_and_a_forced_split_give_the_same_answer(tiny, samples):
    """device_map and max_memory reach transformers/accelerate: here the layers split between CPU and disk."""
    plain = zoo.load("qwen2-vl-2b-instruct", weights=tiny).describe(samples / "cat.png", max_new_tokens=6)
    on_cpu = zoo.load("qwen2-vl-2b-instruct", weights=tiny, device_map="cpu")
    split = zoo.load("qwen2-vl-2b-instruct", weights=tiny, device_map="auto", max_memory={"cpu": "300KB"})
    assert "disk" in split.model.hf_device_map.values()
    assert on_cpu.describe(samples / "cat.png", max_new_tokens=6) == plain
    assert split.describe(samples / "cat.png", max_new_tokens=6) == plain
    with pytest.raises(zoo.BadInput, match="with device_map"):
        zoo.load("qwen2-vl-2b-instruct", weights=tiny, max_memory={"cpu": "1GB"})


def test_the_weights_load_straight_onto_the_models_device(tiny, monkeypatch):
    """On a GPU a whole copy in host memory first would cap the model at the machine's RAM: from_pretrained gets
    the device as its device_map and places each tensor there as it reads it."""
    from transformers import Qwen2VLForConditionalGeneration

    real, placed = Qwen2VLForConditionalGeneration.from_pretrained.__func__, []

    def spy(cls, *args, **kwargs):
        placed.append(kwargs.get("device_map"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(Qwen2VLForConditionalGeneration, "from_pretrained", classmethod(spy))
    model = zoo.load("qwen2-vl-2b-instruct", weights=tiny)
    assert placed == [model.device] and {p.device for p in model.model.parameters()} == {model.device}
