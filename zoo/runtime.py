"""Runtime options, the same for every model: where it runs, in which precision, how it batches.

`zoo.load` checks them once, before anything is built, and hands the plugin a resolved Runtime.
"""

from dataclasses import dataclass
from typing import Any

from .errors import BadInput, MissingDependency

DTYPES = ("float32", "bfloat16", "float16")
ATTENTION = ("sdpa", "eager", "flash_attention_2")


@dataclass(frozen=True)
class Runtime:
    device: Any  # torch.device
    dtype: Any  # torch.dtype
    batch_size: int | None = None  # None: the model family's default
    compile: bool = False  # torch.compile the network
    attention: str | None = None  # None: the family's best available
    device_map: Any = None  # transformers/accelerate placement: "auto", "cpu" or a dict
    workers: int = 4  # decoding threads
    max_memory: dict | None = None  # with device_map: the most each device may hold, {0: "20GiB", "cpu": "60GiB"}


def pick_device(device=None, dtype=None):
    """(torch.device, torch.dtype): CUDA with bf16 when present, else CPU with fp32; either can be forced."""
    import torch

    try:
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except (RuntimeError, TypeError):
        raise BadInput(f"Unknown device {device!r}: use cpu, cuda, cuda:1, mps ...") from None
    check_present(device)
    if dtype is None:
        return device, torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype) and str(dtype).removeprefix("torch.") in DTYPES:
        return device, dtype
    if dtype not in DTYPES:
        raise BadInput(f"Unknown dtype {dtype!r}: use {', '.join(DTYPES)}.")
    return device, getattr(torch, dtype)


def check_present(device):
    """The device exists on this machine: a missing GPU is one line here, not an error deep inside torch."""
    import torch

    counts = {"cpu": lambda: 1, "cuda": torch.cuda.device_count,
              "mps": lambda: int(torch.backends.mps.is_available()),
              "xpu": lambda: torch.xpu.device_count() if hasattr(torch, "xpu") else 0}
    if device.type not in counts:
        raise BadInput(f"device={str(device)!r}: zoo runs models on {', '.join(counts)}.")
    count = counts[device.type]()
    if not count:
        raise BadInput(f"device={str(device)!r} but this machine has no {device.type} device: use device='cpu'.")
    if device.index is not None and device.index >= count:
        raise BadInput(f"device={str(device)!r} but this machine has {count} {device.type} device(s), numbered from 0.")


def make_runtime(*, device=None, dtype=None, batch_size=None, compile=False, attention=None, device_map=None,
                 workers=None, max_memory=None):
    """A checked Runtime from zoo.load's keyword arguments."""
    for name, value in (("batch_size", batch_size), ("workers", workers)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise BadInput(f"{name}={value!r}: expected a positive integer.")
    if not isinstance(compile, bool):
        raise BadInput(f"compile={compile!r}: expected True or False.")
    if device_map is not None and not isinstance(device_map, (str, dict)):
        raise BadInput(f"device_map={device_map!r}: use 'auto', 'cpu' or a dict of module name to device.")
    if max_memory is not None and (not isinstance(max_memory, dict) or device_map is None):
        raise BadInput(f"max_memory={max_memory!r}: a dict such as {{0: '20GiB', 'cpu': '60GiB'}}, with device_map.")
    device, dtype = pick_device(device, dtype)
    check_attention(attention, device)
    return Runtime(device, dtype, batch_size, compile, attention, device_map, workers or 4, max_memory)


def torch_release():
    """(major, minor) of the installed torch."""
    import torch

    return tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])


def has_flash_attn():
    import importlib.util

    return importlib.util.find_spec("flash_attn") is not None


def check_attention(attention, device):
    """An attention implementation asked for by name is one this machine can run."""
    if attention is not None and attention not in ATTENTION:
        raise BadInput(f"attention={attention!r}: use one of {', '.join(ATTENTION)}.")
    if attention == "flash_attention_2" and device.type != "cuda":
        raise BadInput(f"attention='flash_attention_2' runs on CUDA GPUs, not on {device}: use attention='sdpa'.")
    if attention == "flash_attention_2" and not has_flash_attn():
        raise MissingDependency("flash_attn", "gpu")
