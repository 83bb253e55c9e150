"""A plain Vision Transformer (Dosovitskiy et al., 2020), sized for 32x32 images by default."""

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from einops.layers.torch import Rearrange
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample while training."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, device=x.device) >= self.p
        return x * keep / (1 - self.p)


class Attention(nn.Module):
    def __init__(self, dim, *, heads, dim_head, dropout):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, heads * dim_head * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(dropout))

    def forward(self, x):
        q, k, v = rearrange(self.to_qkv(self.norm(x)), "b n (qkv h d) -> qkv b h n d", qkv=3, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class FeedForward(nn.Sequential):
    def __init__(self, dim, hidden, dropout):
        super().__init__(
            nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, dim), nn.Dropout(dropout),
        )


class Block(nn.Module):
    def __init__(self, dim, *, heads, dim_head, mlp_ratio, dropout, drop_path):
        super().__init__()
        self.attn = Attention(dim, heads=heads, dim_head=dim_head, dropout=dropout)
        self.ff = FeedForward(dim, int(dim * mlp_ratio), dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = x + self.drop_path(self.attn(x))
        return x + self.drop_path(self.ff(x))


class ViT(nn.Module):
    def __init__(self, *, image_size=32, patch_size=4, num_classes=10, dim=128, depth=6, heads=8,
                 dim_head=64, mlp_ratio=4.0, dropout=0.1, emb_dropout=0.1, drop_path=0.0, pool="cls", channels=3):
        super().__init__()
        assert image_size % patch_size == 0, "image_size must be divisible by patch_size"
        assert pool in ("cls", "mean"), "pool is 'cls' or 'mean'"
        num_patches = (image_size // patch_size) ** 2
        patch_dim = channels * patch_size**2
        self.num_classes, self.pool, self.num_prefix_tokens = num_classes, pool, 1

        self.to_patch_embedding = nn.Sequential(
            Rearrange("b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch_size, p2=patch_size),
            nn.LayerNorm(patch_dim),
            nn.Linear(patch_dim, dim),
            nn.LayerNorm(dim),
        )
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches + 1, dim))
        self.dropout = nn.Dropout(emb_dropout)
        rates = torch.linspace(0, drop_path, depth).tolist()  # deeper blocks are dropped more often
        self.blocks = nn.Sequential(
            *(Block(dim, heads=heads, dim_head=dim_head, mlp_ratio=mlp_ratio, dropout=dropout, drop_path=r) for r in rates)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward_features(self, img):
        x = self.to_patch_embedding(img)  # b n d
        cls = repeat(self.cls_token, "1 1 d -> b 1 d", b=x.shape[0])
        x = torch.cat((cls, x), dim=1) + self.pos_embedding
        return self.norm(self.blocks(self.dropout(x)))  # b (1 + n) d

    def forward_head(self, x, pre_logits=False):
        x = x[:, 0] if self.pool == "cls" else x[:, 1:].mean(dim=1)
        return x if pre_logits else self.head(x)

    def forward(self, img):
        return self.forward_head(self.forward_features(img))
