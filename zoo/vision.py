"""ImageModel: the Model interface over any torch image module (timm-style or a plain nn.Module).

The plugin gives the module, its labels and its preprocessing; this class decodes and resizes in the
decoding threads (uint8, on the CPU), then normalises on the model's device and runs classify or embed.
"""

import functools
import math
from dataclasses import dataclass

from .errors import BadInput
from .inputs import max_pixels
from .model import Model
from .records import Preprocess


@dataclass(frozen=True)
class EmbedOptions:
    patch_tokens: bool = False  # the patch tokens (without prefix tokens) instead of the pooled embedding


def build_network(record, build, args, where=None):
    """build(**args): the network a record describes. Arguments it refuses (a record's model_args, a config
    file's, load options) are one line naming the model, the arguments and where they came from."""
    try:
        return build(**args)
    except (TypeError, ValueError, RuntimeError, KeyError, OverflowError) as e:
        raise BadInput(f"{record.name}: cannot build {record.architecture} from {args} ({' '.join(str(e).split())}). "
                       f"Check the model_args in {where or record.source}, and the options given to zoo.load.") from None


def eval_transform(pre: Preprocess):
    """timm's eval transform, to a uint8 tensor (normalised later): resize to size/crop_pct, then crop to size.

    The crop mode is timm's: 'center' keeps the aspect ratio so the short edge fits and crops the rest, 'squash'
    stretches both edges, 'border' keeps the aspect ratio so the long edge fits and pads with the mean colour.
    """
    from torchvision import transforms as T

    size = tuple(pre.input_size[1:])
    scale = tuple(math.floor(s / pre.crop_pct) for s in size)
    resize = functools.partial(resize_for_crop, mode=pre.crop_mode, scale=scale,
                               interpolation=T.InterpolationMode(pre.interpolation))
    fill = tuple(round(255 * m) for m in pre.mean) if pre.crop_mode == "border" else 0
    return T.Compose([resize, functools.partial(crop_or_pad, size=size, fill=fill), chw_tensor])


def chw_tensor(image):
    """An RGB image (PIL, or an HWC uint8 array) as a contiguous uint8 CHW tensor of its own. The transposition runs
    here, in the decoding threads, so the batch is a plain copy on the model's thread; numpy, not torch, so no
    decoding thread starts torch's thread pool."""
    import numpy as np
    import torch

    return torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy())


def resized_size(mode, height, width, scale):
    """(height, width) of an image resized as timm resizes it before the crop, to `scale` (height, width)."""
    if mode == "squash":
        return scale
    if mode == "center" and scale[0] == scale[1]:  # torchvision's Resize(short edge): the long edge truncated
        short, long = sorted((height, width))
        resized = (scale[0], int(scale[0] * long / short))
        return resized if height <= width else resized[::-1]
    ratios = (height / scale[0], width / scale[1])  # timm's ResizeKeepRatio: edges rounded
    ratio = max(ratios) if mode == "border" else min(ratios)
    return max(1, round(height / ratio)), max(1, round(width / ratio))


def resize_for_crop(image, *, mode, scale, interpolation):
    from torchvision.transforms import functional as F

    height, width = resized_size(mode, image.height, image.width, scale)
    if width * height > max_pixels():  # a thin strip of a few kilobytes would grow to gigabytes
        raise BadInput(f"The image ({image.width}x{image.height}) is too thin for this model: its preprocessing would "
                       f"resize it to {width}x{height}, over zoo's limit of {max_pixels()} pixels (crop it first, "
                       "or raise ZOO_MAX_IMAGE_PIXELS if you trust it).")
    return F.resize(image, [height, width], interpolation)


def crop_or_pad(image, *, size, fill):
    """The centre `size` (height, width) of the image, padded first with `fill` on the edges where it is smaller."""
    from torchvision.transforms import functional as F

    pad_h, pad_w = max(size[0] - image.height, 0), max(size[1] - image.width, 0)
    if pad_h or pad_w:
        image = F.pad(image, [pad_w // 2, pad_h // 2, (pad_w + 1) // 2, (pad_h + 1) // 2], fill=fill)
    return F.center_crop(image, list(size))


class ImageModel(Model):
    """Wraps a module whose forward gives logits; forward_features/forward_head (timm) give embeddings."""

    embed_options = EmbedOptions
    hints = {"classify": "It has no classification head: train a probe with 'zoo probe'."}

    def __init__(self, record, runtime, module, *, labels=None, preprocess=None, attention=None, weights_path=None):
        super().__init__(record, runtime, weights_path=weights_path)
        import torch

        self.labels = tuple(labels) if labels else None
        self.preprocess = preprocess or record.preprocess or Preprocess()
        self.attention = attention
        self._transform = eval_transform(self.preprocess)
        size = self.preprocess.input_size[1:]
        # Arrays already at the input size skip PIL: resizing and centre-cropping to the same size change nothing.
        self._native = size if all(math.floor(s / self.preprocess.crop_pct) == s for s in size) else None
        self._mean = torch.tensor(self.preprocess.mean, device=self.device).view(1, -1, 1, 1) * 255
        self._std = torch.tensor(self.preprocess.std, device=self.device).view(1, -1, 1, 1) * 255
        # bf16/fp16 on CUDA run through autocast; weights stay fp32 there for accuracy.
        module = module.eval().to(self.device, dtype=self.dtype if self.device.type == "cpu" else None)
        if self.device.type == "cuda":
            module = module.to(memory_format=torch.channels_last)
        self.module = torch.compile(module) if runtime.compile else module
        self.autocast = self.device.type == "cuda" and self.dtype != torch.float32
        self.capabilities = frozenset({"embed"} if hasattr(module, "forward_features") else set()) | (
            {"classify"} if self.labels and getattr(module, "num_classes", len(self.labels)) else set())
        if not self.labels and getattr(module, "num_classes", 0):
            self.hints = {"classify": f"Its head has {module.num_classes} classes but its record names no labels: "
                                      "add labels (a set such as imagenet-1k, or a list) to the record."}

    def prepare(self, item):
        if self._native and type(item).__module__ == "numpy" and item.dtype.char == "B" and \
                item.ndim == 3 and item.shape[2] == 3 and tuple(item.shape[:2]) == tuple(self._native):
            return chw_tensor(item)
        return self._transform(super().prepare(item))

    def collate(self, prepared):
        """One uint8 batch, on CUDA in pinned memory (its copy to the GPU overlaps compute). numpy copies it: torch's
        parallel copy waits for its slowest thread, and while the decoding threads keep every core busy, one copy
        took 0.1 to 2 s instead of 0.03 s (2 cores)."""
        import numpy as np
        import torch

        batch = torch.empty((len(prepared), *prepared[0].shape), dtype=torch.uint8,
                            pin_memory=self.device.type == "cuda")
        np.stack([item.numpy() for item in prepared], out=batch.numpy())
        return batch

    def classify_batch(self, pixels, options):
        return self.label_predictions(self.forward(pixels, self.module), options)  # top-k on the device

    def embed_batch(self, pixels, options):
        # contiguous: a pooled row is often a view into the whole token tensor, which it would keep alive
        return self.forward(pixels, lambda x: self.features(x, patch_tokens=options.patch_tokens)).cpu().contiguous()

    def features(self, x, *, patch_tokens=False):
        """Pooled features (the model's own pooling), or patch tokens without prefix tokens."""
        tokens = self.module.forward_features(x)
        if patch_tokens:
            return tokens[:, getattr(self.module, "num_prefix_tokens", 0):]
        if hasattr(self.module, "forward_head"):
            return self.module.forward_head(tokens, pre_logits=True)
        return tokens.mean(dim=tuple(range(1, tokens.ndim - 1))) if tokens.ndim > 2 else tokens

    def forward(self, pixels, fn):
        """fn over a uint8 NCHW batch, normalised on the device; float32 results, on the device."""
        import torch

        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.autocast):
            return fn(self.normalise(pixels)).float()

    def normalise(self, pixels):
        """uint8 NCHW (any device) -> normalised float on the model's device."""
        import torch

        x = (pixels.to(self.device, non_blocking=True).float() - self._mean) / self._std
        if self.device.type == "cuda":
            return x.contiguous(memory_format=torch.channels_last)
        return x.to(self.dtype)
