"""Qwen2-VL gets exactly the tensors of the official path: qwen-vl-utils' process_vision_info, then the processor.

The reference side runs qwen-vl-utils' own torchvision video reader, on torchvision.io.read_video where
torchvision has it and on a PyAV stand-in where it does not (0.29); zoo runs its own PyAV reader. The tiny checkpoint
carries the released processor budget (3136 .. 12845056 pixels).
"""

import numpy as np
import pytest
import torch
import torchvision.io
from PIL import Image
from qwen_vl_utils import process_vision_info, vision_process
from transformers import AutoProcessor

import zoo
from zoo.testing import write_video
from zoo_qwen2vl.testing import official_read_video
from zoo_qwen2vl.video import frame_times

KEYS = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw")
SEED_QUESTION = "How many dogs do you see? Reply in Chinese."


@pytest.fixture
def official(qwen2vl_tiny, monkeypatch):
    processor = AutoProcessor.from_pretrained(qwen2vl_tiny)
    processor.tokenizer.padding_side = "left"

    def run(chats):
        with monkeypatch.context() as patch:
            if not hasattr(torchvision.io, "read_video"):
                patch.setattr(torchvision.io, "read_video", official_read_video, raising=False)
            patch.setitem(vision_process.VIDEO_READER_BACKENDS, "torchvision", vision_process._read_video_torchvision)
            patch.setattr(vision_process, "get_video_reader_backend", lambda: "torchvision")
            images, videos, video_kwargs = process_vision_info(chats, return_video_kwargs=True)
        video_kwargs.pop("fps")  # a per-video list this processor refuses; Qwen2-VL's tensors do not use it
        texts = [processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
        return processor(text=texts, images=images, videos=videos, padding=True, return_tensors="pt", **video_kwargs)

    return run


@pytest.fixture
def model(qwen2vl_tiny):
    return zoo.load("qwen2-vl-2b-instruct", weights=qwen2vl_tiny)


def assert_same(ours, theirs):
    for key in KEYS:
        assert (key in ours) == (key in theirs), key
        if key in ours:
            assert ours[key].shape == theirs[key].shape and torch.equal(ours[key], theirs[key]), key


def image_file(tmp_path, size, mode="RGB"):
    rng = np.random.default_rng(sum(size))
    channels = 4 if mode == "RGBA" else 3
    array = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    path = tmp_path / f"image-{size[0]}x{size[1]}-{mode}.png"
    Image.fromarray(array, mode).save(path)
    return path


def video_file(tmp_path, seconds, fps, size=(64, 48), *, suffix="mp4", codec="mpeg4", b_frames=0):
    path = tmp_path / f"clip-{seconds}s-{fps}fps-{size[0]}x{size[1]}-{codec}-{b_frames}.{suffix}"
    return write_video(path, map(pattern(size), range(seconds * fps)), fps=fps, codec=codec, b_frames=b_frames)


def pattern(size):
    """Frame i: grey level 7i, its left half saturated in channel i % 3."""
    def frame(i):
        pixels = np.full((size[1], size[0], 3), (7 * i) % 255, np.uint8)
        pixels[:, : size[0] // 2, i % 3] = 255
        return pixels
    return frame


def message(*parts, text=SEED_QUESTION):
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


@pytest.mark.parametrize("size, mode, budget", [
    ((640, 480), "RGB", {}), ((40, 30), "RGB", {}), ((2000, 1200), "RGB", {}), ((30, 700), "RGB", {}),
    ((300, 200), "RGBA", {}), ((640, 480), "RGB", {"max_pixels": 50176}), ((40, 30), "RGB", {"min_pixels": 200704}),
    ((640, 480), "RGB", {"min_pixels": 3136, "max_pixels": 12544}), ((640, 480), "RGB", {"resized_height": 280,
                                                                                       "resized_width": 420}),
])
def test_images_match_the_official_path(model, official, tmp_path, size, mode, budget):
    path = str(image_file(tmp_path, size, mode))
    chat = message({"type": "image", "image": path, **budget})
    expected = official([chat])
    assert_same(model.model_inputs(chat), expected)  # the chat as it is
    if not budget:
        assert_same(model.model_inputs(path, prompt=SEED_QUESTION), expected)  # the same image by its path


@pytest.mark.parametrize("kind", ["path", "pil", "array", "tensor"])
def test_a_load_budget_is_honoured_for_every_kind_of_image(qwen2vl_tiny, official, tmp_path, kind):
    path = image_file(tmp_path, (640, 480))
    pil = Image.open(path).convert("RGB")
    item = {"path": str(path), "pil": pil, "array": np.asarray(pil),
            "tensor": torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)}[kind]
    model = zoo.load("qwen2-vl-2b-instruct", weights=qwen2vl_tiny, max_pixels=50176)
    expected = official([message({"type": "image", "image": str(path), "max_pixels": 50176})])
    assert_same(model.model_inputs(item, prompt=SEED_QUESTION), expected)


def test_budgets_below_the_default_minimum_do_not_crash(qwen2vl_tiny, tmp_path):
    with pytest.raises(zoo.BadInput, match="max_pixels=1000 must be at least 3136"):
        zoo.load("qwen2-vl-2b-instruct", weights=qwen2vl_tiny, max_pixels=1000)
    model = zoo.load("qwen2-vl-2b-instruct", weights=qwen2vl_tiny)
    with pytest.raises(zoo.BadInput, match="smallest image is 3136 pixels"):
        model.model_inputs(message({"type": "image", "image": str(image_file(tmp_path, (64, 48))), "max_pixels": 999}))
    # qwen-vl-utils alone asserts here (its video min_pixels is 100352); zoo lowers the minimum instead.
    clip = message({"type": "video", "video": str(video_file(tmp_path, 4, 6)), "max_pixels": 50176})
    t, h, w = model.model_inputs(clip)["video_grid_thw"][0].tolist()
    assert h * w * 14 * 14 <= 50176


SEED_VIDEO = {"max_pixels": 360 * 420, "fps": 1.0}


@pytest.mark.parametrize("clip, options", [
    ((10, 5), SEED_VIDEO), ((10, 5), {}), ((3, 8), SEED_VIDEO), ((4, 6), {"fps": 0.5}), ((4, 6), {"nframes": 6}),
    ((4, 6), {"fps": 4.0, "min_frames": 8, "max_frames": 12}), ((10, 5), {"video_start": 2.0, "video_end": 6.5}),
    ((4, 6), {"min_pixels": 200704}), ((4, 6), {"max_pixels": 100352 * 2}), ((10, 5), {"total_pixels": 2_000_000}),
    ((4, 6), {"resized_height": 112, "resized_width": 168}),
])
def test_videos_match_the_official_path(model, official, tmp_path, clip, options):
    path = str(video_file(tmp_path, *clip))
    chat = message({"type": "video", "video": path, **options}, text="Describe this video.")
    expected = official([chat])
    ours = model.model_inputs(chat)
    assert_same(ours, expected)
    if options is SEED_VIDEO and clip == (10, 5):
        assert ours["video_grid_thw"][0, 0].item() == 5  # 10 frames, in temporal pairs: 1 fps, as asked


@pytest.mark.parametrize("suffix, codec", [("mp4", "mpeg4"), ("mkv", "mpeg4"), ("avi", "mpeg4"), ("mp4", "libx264"),
                                           ("webm", "libvpx-vp9")])
def test_containers_and_reordered_frames_match_the_official_path(model, official, tmp_path, suffix, codec):
    """zoo counts frames from the packets' timestamps; the official path decodes every frame to count them."""
    path = str(video_file(tmp_path, 5, 6, suffix=suffix, codec=codec, b_frames=2))
    assert frame_times(path, 0, None) == frame_times(path, 0, None, from_packets=False)  # the fallback
    for options in ({"nframes": 6}, {"fps": 2.0, "video_start": 1.0, "video_end": 3.5}):
        chat = message({"type": "video", "video": path, **options}, text="Describe this video.")
        assert_same(model.model_inputs(chat), official([chat]))


def test_load_options_reach_videos_given_by_path(qwen2vl_tiny, official, tmp_path):
    path = str(video_file(tmp_path, 10, 5))
    model = zoo.load("qwen2-vl-2b-instruct", weights=qwen2vl_tiny, fps=1.0)
    expected = official([message({"type": "video", "video": path, "fps": 1.0}, text="Describe this video.")])
    assert_same(model.model_inputs(path), expected)


def test_multi_image_image_and_video_and_batches(model, official, tmp_path):
    a, b = str(image_file(tmp_path, (640, 480))), str(image_file(tmp_path, (40, 30)))
    clip = str(video_file(tmp_path, 3, 8))
    pair = message({"type": "image", "image": a}, {"type": "image", "image": b}, text="What differs?")
    mixed = message({"type": "image", "image": a}, {"type": "video", "video": clip, "fps": 1.0})
    single = message({"type": "image", "image": b})
    for chats in ([pair], [mixed], [pair, single], [single, mixed, pair]):
        assert_same(model.model_inputs(chats if len(chats) > 1 else chats[0]), official(chats))
    assert_same(model.model_inputs([[a, b]], prompt="What differs?"), official([pair]))
