"""Augmentation of whole batches of uint8 images on the device, every image with its own random draws.

Each function does a fixed number of tensor operations per batch, whatever the batch size: on an H100, per-image or
per-chunk Python work made a training step wait for the host (docs/benchmarks.md).
"""

import functools
import math

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import RandAugment
from torchvision.transforms.v2 import functional as TF

CROP_PADDING = 4  # pixels of reflect padding before a random 32x32 crop
MAGNITUDE, MAGNITUDE_BINS = 9, 31  # torchvision's RandAugment defaults
OPS = tuple(RandAugment._AUGMENTATION_SPACE)  # its 14 ops, Identity first, each drawn with equal chance
BLENDS = ("Brightness", "Color", "Contrast", "Sharpness")  # image + (1 - factor) * (degenerate image - image)


def random_crop(x, gen, pad=CROP_PADDING):
    n, _, h, w = x.shape
    padded = F.pad(x.float(), (pad, pad, pad, pad), mode="reflect").to(x.dtype)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # n 1 h 1
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # n 1 1 w
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_flip(x, gen):
    flip = (torch.rand(x.shape[0], generator=gen, device=x.device) < 0.5)[:, None, None, None]
    return torch.where(flip, x.flip(3), x)


# -- RandAugment ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def magnitude(op, h, w):
    """An op's strength at torchvision's default magnitude, before its random sign (0.0 for ops without one)."""
    values = RandAugment._AUGMENTATION_SPACE[op][0](MAGNITUDE_BINS, h, w)
    return 0.0 if values is None else float(values[MAGNITUDE])


def inverse_affine(op, m, h, w):
    """The output-to-input pixel map torchvision's affine/rotate use for a geometric op, about the image centre:
    shears about the top-left corner, translations by whole pixels, rotation by m degrees counter-clockwise."""
    if op == "ShearX":
        return [[1.0, m, m * h / 2], [0.0, 1.0, 0.0]]
    if op == "ShearY":
        return [[1.0, 0.0, 0.0], [m, 1.0, m * w / 2]]
    if op == "TranslateX":
        return [[1.0, 0.0, -float(int(m))], [0.0, 1.0, 0.0]]
    if op == "TranslateY":
        return [[1.0, 0.0, 0.0], [0.0, 1.0, -float(int(m))]]
    if op == "Rotate":
        c, s = math.cos(math.radians(m)), math.sin(math.radians(m))
        return [[c, -s, 0.0], [s, c, 0.0]]
    return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


@functools.lru_cache(maxsize=8)
def tables(h, w, device):
    """Per (op, sign): the inverse affine map (op sign 2 3) and the blend weight 1 - factor (op sign); per op, the
    index of its degenerate image (BLENDS order; 0, with weight 0, for an op that is not a blend)."""
    thetas, weights = [], []
    for op in OPS:
        m = magnitude(op, h, w)
        thetas.append([inverse_affine(op, m, h, w), inverse_affine(op, -m, h, w)])
        weights.append([-m, m] if op in BLENDS else [0.0, 0.0])
    kinds = [BLENDS.index(op) if op in BLENDS else 0 for op in OPS]
    return torch.tensor(thetas, device=device), torch.tensor(weights, device=device), torch.tensor(kinds, device=device)


def warp(x, theta):
    """Nearest-neighbour affine warp with a map per image (n 2 3), zeros outside, as torchvision's affine does."""
    n, _, h, w = x.shape
    xs = torch.linspace((1 - w) / 2, (w - 1) / 2, w, device=x.device)
    ys = torch.linspace((1 - h) / 2, (h - 1) / 2, h, device=x.device)
    base = torch.stack([xs.expand(h, w), ys[:, None].expand(h, w), torch.ones(h, w, device=x.device)], dim=-1)
    scale = torch.tensor([w / 2, h / 2], device=x.device)
    grid = base.view(1, h * w, 3).expand(n, -1, -1).bmm(theta.transpose(1, 2) / scale)  # n (h w) 2
    out = F.grid_sample(x.float(), grid.view(n, h, w, 2), mode="nearest", padding_mode="zeros", align_corners=False)
    return out.round_().to(x.dtype)


def degenerates(x):
    """Per blend op, the image it blends towards (Brightness: black; Color: grey; Contrast: the mean grey;
    Sharpness: the image with a smoothed interior): op n c h w, floats."""
    image = x.float()
    grey = TF.rgb_to_grayscale(image).floor_()  # torchvision floors the grey of uint8 images
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], device=x.device) / 13
    smooth = image.clone()
    smooth[..., 1:-1, 1:-1] = F.conv2d(image, kernel.expand(3, 1, 3, 3), groups=3).round_()
    mean_grey = grey.mean(dim=(1, 2, 3), keepdim=True)
    return torch.stack([torch.zeros_like(image), grey.expand_as(image), mean_grey.expand_as(image), smooth])


def rand_augment_layer(x, op, negative, shared):
    """One RandAugment op per image: op[i] indexes OPS, negative[i] flips its magnitude's sign; shared: tables()."""
    thetas, weights, kinds = shared
    x = warp(x, thetas[op, negative.long()])  # the identity map for every non-geometric op
    weight = weights[op, negative.long()][:, None, None, None]  # 0 for every op that is not a blend
    target = degenerates(x).gather(0, kinds[op][None, :, None, None, None].expand(1, *x.shape))[0]
    image = x.float()
    x = image.add_(target.sub_(image).mul_(weight)).clamp_(0, 255).to(x.dtype)
    for name, apply in (("Posterize", posterize), ("Solarize", solarize), ("AutoContrast", autocontrast),
                        ("Equalize", TF.equalize)):
        x = torch.where((op == OPS.index(name))[:, None, None, None], apply(x), x)
    return x


def posterize(x):
    return TF.posterize(x, int(magnitude("Posterize", *x.shape[-2:])))


def solarize(x):
    return TF.solarize(x, 255 * magnitude("Solarize", *x.shape[-2:]))


def autocontrast(x):
    """torchvision's autocontrast without its boolean-mask assignment, which waits for the GPU."""
    image = x.float()
    low, high = image.amin(dim=(-2, -1), keepdim=True), image.amax(dim=(-2, -1), keepdim=True)
    flat = high == low  # a one-level channel is left as it is
    scale = torch.where(flat, 1.0, (high - low).mul_(1.0 / 255))
    return image.sub_(torch.where(flat, 0.0, low)).div_(scale).clamp_(0, 255).to(x.dtype)


def rand_augment(x, ops, gen):
    """torchvision's RandAugment(num_ops=ops): the same ops and magnitudes, drawn for each image."""
    shared = tables(*x.shape[-2:], x.device)
    for _ in range(ops):
        op = torch.randint(len(OPS), (x.shape[0],), generator=gen, device=x.device)
        negative = torch.rand(x.shape[0], generator=gen, device=x.device) <= 0.5
        x = rand_augment_layer(x, op, negative, shared)
    return x


# -- mixing ---------------------------------------------------------------------------------------


def mix(x, y_soft, recipe, rng):
    """Mixup or CutMix (one of them per batch, as timm does) with the batch reversed as partner."""
    if not (recipe.mixup or recipe.cutmix):
        return x, y_soft
    use_cutmix = recipe.cutmix and (not recipe.mixup or rng.random() < 0.5)
    lam = float(rng.beta(recipe.cutmix, recipe.cutmix) if use_cutmix else rng.beta(recipe.mixup, recipe.mixup))
    if use_cutmix:
        h, w = x.shape[-2:]
        cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = rng.integers(h), rng.integers(w)
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x.flip(0)[:, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        x = x * lam + x.flip(0) * (1 - lam)
    return x, y_soft * lam + y_soft.flip(0) * (1 - lam)
