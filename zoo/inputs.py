"""Turn what users pass (paths, PIL images, arrays, tensors, lists of them) into RGB PIL images."""

from pathlib import Path

from .errors import BadInput
from .streaming import is_tensor

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def is_video(item):
    return isinstance(item, (str, Path)) and Path(item).suffix.lower() in VIDEO_SUFFIXES


def load_image(item):
    from PIL import Image

    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, (str, Path)):
        return _open(Path(item))
    if is_tensor(item):
        return _from_tensor(item)
    if type(item).__module__ == "numpy":
        return _from_array(item)
    raise BadInput(
        f"Cannot read an image from {type(item).__name__}: pass a path, a PIL image, "
        "a numpy HWC uint8 array, or a CHW/NCHW tensor."
    )


def _open(path):
    from PIL import Image, UnidentifiedImageError

    if is_video(path):
        raise BadInput(f"{path} is a video; this model reads images (Qwen2-VL models describe videos).")
    if not path.is_file():
        raise BadInput(f"Image file not found: {path}")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise BadInput(f"{path} is not a readable image ({e}).") from None


def _from_array(array):
    import numpy as np
    from PIL import Image

    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise BadInput(f"A numpy image must be HxW or HxWxC with C in 1, 3, 4; got shape {array.shape}.")
    if array.dtype != np.uint8:
        raise BadInput(f"A numpy image must be uint8 (0..255); got {array.dtype}. Use array.astype('uint8').")
    return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")


def _from_tensor(tensor):
    import torch

    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise BadInput(f"A tensor image must be CHW (or NCHW) with 1 or 3 channels; got shape {tuple(tensor.shape)}.")
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        if not tensor.isfinite().all() or tensor.min() < 0 or tensor.max() > 1:
            raise BadInput("A float tensor image must hold finite values in [0, 1]; pass uint8 for 0..255.")
        tensor = (tensor * 255).round().to(torch.uint8)
    elif tensor.dtype != torch.uint8:
        raise BadInput(f"A tensor image must be uint8 or float in [0, 1]; got {tensor.dtype}.")
    return _from_array(tensor.permute(1, 2, 0).numpy())
