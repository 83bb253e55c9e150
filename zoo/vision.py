"""ImageModel: the Model interface over any torch image module (timm-style or a plain nn.Module)."""

import math
from concurrent.futures import ThreadPoolExecutor

from .devices import pick_device
from .errors import BadInput, ZooError
from .inputs import flatten, load_image
from .model import Model, Prediction
from .records import Preprocess


def eval_transform(pre: Preprocess):
    """timm's eval transform: resize to size/crop_pct, centre crop, to tensor, normalise."""
    from torchvision import transforms as T

    size = pre.input_size[1:]
    scale = tuple(math.floor(s / pre.crop_pct) for s in size)
    interpolation = T.InterpolationMode(pre.interpolation)
    return T.Compose(
        [
            T.Resize(scale if scale[0] != scale[1] else scale[0], interpolation=interpolation),
            T.CenterCrop(size),
            T.PILToTensor(),
        ]
    )


class ImageModel(Model):
    """Wraps a module whose forward gives logits; forward_features/forward_head (timm) give embeddings."""

    def __init__(self, record, module, *, labels=None, preprocess=None, device=None, dtype=None,
                 batch_size=64, workers=4, compile=False, attention=None):
        super().__init__(record)
        import torch

        self.device, self.dtype = pick_device(device, dtype)
        self.labels = tuple(labels) if labels else None
        self.preprocess = preprocess or record.preprocess or Preprocess()
        self.batch_size, self.workers = batch_size, workers
        self._transform = eval_transform(self.preprocess)
        self._mean = torch.tensor(self.preprocess.mean, device=self.device).view(1, -1, 1, 1) * 255
        self._std = torch.tensor(self.preprocess.std, device=self.device).view(1, -1, 1, 1) * 255
        # bf16/fp16 on CUDA run through autocast; weights stay fp32 there for accuracy.
        module = module.eval().to(self.device, dtype=self.dtype if self.device.type == "cpu" else None)
        if self.device.type == "cuda":
            module = module.to(memory_format=torch.channels_last)
        self.module = torch.compile(module) if compile else module
        self.autocast = self.device.type == "cuda" and self.dtype != torch.float32
        self.attention = attention
        caps = {"embed"} if hasattr(module, "forward_features") else set()
        if self.labels and getattr(module, "num_classes", len(self.labels)):
            caps.add("classify")
        self.capabilities = frozenset(caps)

    # -- the interface --------------------------------------------------------------------------

    def classify(self, images, *, top_k=5, labels=None):
        if "classify" not in self.capabilities:
            raise self.unsupported("classify", "It has no classification head: train a probe with 'zoo probe'.")
        import torch

        indices = self._label_indices(labels)
        logits = self._run(images, self.module)
        if indices is not None:
            logits = logits[:, indices]
        probs = torch.softmax(logits.float(), dim=-1)
        top_k = max(1, min(top_k, probs.shape[1]))
        scores, picks = probs.topk(top_k, dim=-1)
        results = []
        for row_scores, row_picks in zip(scores.tolist(), picks.tolist()):
            idx = [indices[i] if indices is not None else i for i in row_picks]
            results.append([Prediction(self.labels[i], i, s) for i, s in zip(idx, row_scores)])
        return results

    def embed(self, images, *, patch_tokens=False):
        if "embed" not in self.capabilities:
            raise self.unsupported("embed")
        return self._run(images, lambda x: self.features(x, patch_tokens=patch_tokens)).float()

    def features(self, x, *, patch_tokens=False):
        """Pooled features (the model's own pooling), or patch tokens without prefix tokens."""
        tokens = self.module.forward_features(x)
        if patch_tokens:
            return tokens[:, getattr(self.module, "num_prefix_tokens", 0):]
        if hasattr(self.module, "forward_head"):
            return self.module.forward_head(tokens, pre_logits=True)
        return tokens.mean(dim=tuple(range(1, tokens.ndim - 1))) if tokens.ndim > 2 else tokens

    # -- batching -------------------------------------------------------------------------------

    def _label_indices(self, labels):
        if labels is None:
            return None
        unknown = [label for label in labels if label not in self.labels]
        if unknown:
            raise BadInput(
                f"{self.name} is a closed-set classifier; {unknown[0]!r} is not one of its labels. "
                "Use an open-vocabulary model (Florence-2, Qwen2-VL) for free-form labels."
            )
        return [self.labels.index(label) for label in labels]

    def pixels(self, images):
        """uint8 NCHW on the CPU: decoding and resizing in parallel threads (PIL releases the GIL)."""
        import torch

        items = flatten(images)
        with ThreadPoolExecutor(max(1, min(self.workers, len(items)))) as pool:
            return torch.stack(list(pool.map(lambda item: self._transform(load_image(item)), items)))

    def normalise(self, pixels):
        """uint8 NCHW (any device) -> normalised float on the model's device."""
        import torch

        x = pixels.to(self.device, non_blocking=True).float()
        x = (x - self._mean) / self._std
        if self.device.type == "cuda":
            return x.contiguous(memory_format=torch.channels_last)
        return x.to(self.dtype)

    def _run(self, images, fn):
        pixels = self.pixels(images)
        return self.run_batches(pixels, fn)

    def run_batches(self, pixels, fn):
        """fn over uint8 pixels in batches; halves the batch size on out-of-memory."""
        import torch

        outputs, start, batch = [], 0, self.batch_size
        while start < len(pixels):
            try:
                with torch.inference_mode(), torch.autocast(
                    self.device.type, dtype=self.dtype, enabled=self.autocast
                ):
                    outputs.append(fn(self.normalise(pixels[start:start + batch])).float().cpu())
                start += batch
            except torch.OutOfMemoryError:
                if batch == 1:
                    raise ZooError(f"{self.name}: out of memory even at batch size 1 on {self.device}.") from None
                torch.cuda.empty_cache()
                batch //= 2
        self.batch_size = batch
        return torch.cat(outputs)
