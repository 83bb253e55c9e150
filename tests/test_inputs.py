"""Every accepted input kind, and the bad ones."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.inputs import load_image
from zoo.streaming import check_not_empty, iter_inputs


def load_images(inputs):
    check_not_empty(inputs)
    return [load_image(item) for item in iter_inputs(inputs)]


def test_every_kind_decodes_to_the_same_pixels(samples):
    path = samples / "cat.png"
    pil = Image.open(path).convert("RGB")
    array = np.array(pil)  # writable: torch.from_numpy warns on a read-only array
    chw = torch.from_numpy(array).permute(2, 0, 1)
    data = path.read_bytes()
    kinds = [str(path), path, f"file://{path}", pil, array, chw, chw.float() / 255, chw[None], data, io.BytesIO(data),
             open(path, "rb"), {"bytes": data, "path": "elsewhere.png"}, {"bytes": None, "path": str(path)}]
    # file://: the model cards' form of a local path; a datasets Image record: its bytes, else its path
    for image in load_images(kinds):
        assert np.array_equal(np.asarray(image), array)
    assert len(load_images(torch.stack([chw, chw]))) == 2  # NCHW is a batch
    assert load_images(array[:, :, :1])[0].mode == "RGB"  # grayscale HxWx1
    assert len(load_images(io.BytesIO(data))) == 1  # a file object is one input, not an iterator of lines


@pytest.mark.parametrize(
    "bad, message",
    [
        ("missing.png", "not found"),
        (np.zeros((4, 4, 5), dtype=np.uint8), "HxWxC"),
        (np.zeros((4, 4, 3), dtype=np.float32), "uint8"),
        (torch.zeros(5, 4, 4), "CHW"),
        (torch.full((3, 4, 4), 2.0), r"\[0, 1\]"),
        (torch.zeros(3, 4, 4, dtype=torch.int32), "uint8 or float"),
        (42, "Cannot read an image from int"),
        ({"path": "cat.png"}, r"Cannot read an image from a dict with keys path: pass the image it holds"),
        ({"image": "cat.png", "label": 3}, r"keys image, label: .* \(row\['image'\] for row in dataset\)"),
        (42, r"Cannot read an image from int: .* or a Hugging Face datasets image record"),
        ({"bytes": None, "path": None}, "The image record holds neither bytes nor a path"),
        (b"junk", "The bytes object is not a readable image"),
        (io.BytesIO(b"junk"), "The file object is not a readable image"),
        ([], "No inputs"),
        ("clip.mp4", r"is a video; this model reads images: zoo.run \(--out on the command line\) gives it the video.s frames"),
        ("https://example.com/clip.mp4?x=1", "clip.mp4.x=1 is a video; this model reads images"),  # not downloaded
    ],
)
def test_bad_inputs_give_clear_errors(bad, message):
    with pytest.raises(zoo.BadInput, match=message):
        load_images(bad)


def test_corrupt_image_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG not really")
    with pytest.raises(zoo.BadInput, match="not a readable image"):
        load_images(path)
