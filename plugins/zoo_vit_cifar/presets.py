"""Training recipes for the CIFAR-10 ViT (no torch here: the CLI lists them at start-up)."""

from dataclasses import dataclass

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class Recipe:
    model: dict
    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "adamw"  # adam | adamw
    weight_decay: float = 0.05
    warmup_epochs: float = 0.0
    schedule: str = "cosine"  # cosine | constant
    label_smoothing: float = 0.0
    crop: bool = False  # random crop with 4-pixel reflect padding
    flip: bool = False
    randaugment: int = 0  # number of ops; 0 = off
    mixup: float = 0.0  # Beta alpha; 0 = off
    cutmix: float = 0.0
    mean: tuple = CIFAR_MEAN
    std: tuple = CIFAR_STD
    bf16: bool = True  # autocast on CUDA only
    compile: bool = False


PRESETS = {
    # The original recipe, exactly: ViT(patch 4, dim 128, depth 6, 8 heads, MLP 512, dropout 0.1),
    # Adam 3e-4, batch 64, 10 epochs, Resize(32) + Normalize(0.5, 0.5), fp32.
    "seed": Recipe(
        model=dict(patch_size=4, dim=128, depth=6, heads=8, dim_head=64, mlp_ratio=4.0, dropout=0.1, emb_dropout=0.1),
        epochs=10, batch_size=64, lr=3e-4, optimizer="adam", weight_decay=0.0, schedule="constant",
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), bf16=False,
    ),
    # Lee et al. 2021 ("ViT for small-size datasets") sizes and regularisation, with the fast-training
    # habits: whole dataset on the GPU, batched augmentation, bf16, large batches, torch.compile.
    "best": Recipe(
        model=dict(patch_size=4, dim=256, depth=9, heads=8, dim_head=32, mlp_ratio=2.0, dropout=0.0,
                   emb_dropout=0.0, drop_path=0.1, pool="cls"),
        epochs=200, batch_size=512, lr=2e-3, weight_decay=0.05, warmup_epochs=10, label_smoothing=0.1,
        crop=True, flip=True, randaugment=2, mixup=0.8, cutmix=1.0, compile=True,
    ),
    # Sized for two CPU cores: a small, shallow ViT with light augmentation that learns in minutes.
    "cpu": Recipe(
        model=dict(patch_size=4, dim=128, depth=4, heads=4, dim_head=32, mlp_ratio=2.0, dropout=0.0,
                   emb_dropout=0.0, drop_path=0.05, pool="mean"),
        epochs=30, batch_size=256, lr=2e-3, weight_decay=0.05, warmup_epochs=1, label_smoothing=0.1,
        crop=True, flip=True, bf16=False,
    ),
}
