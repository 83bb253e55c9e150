"""Device and dtype defaults: CUDA with bf16 when present, else CPU with fp32."""

from .errors import ZooError


def pick_device(device=None, dtype=None):
    """CUDA with bf16 when present, else CPU with fp32; either can be forced."""
    import torch

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ZooError(f"Unknown dtype {dtype!r}: use float32, bfloat16 or float16.")
        dtype = getattr(torch, dtype)
    return device, dtype
