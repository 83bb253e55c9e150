"""What the transformers vision-language plugins share: loading, attention choice, label likelihoods."""

from .devices import pick_device
from .errors import MissingWeights, require


def attention_backend(device):
    """flash_attention_2 on CUDA when flash-attn is installed (pip install 'zoo[gpu]'), else PyTorch SDPA."""
    import importlib.util

    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def load_pretrained(model_class, processor_class, record, weights, *, device=None, dtype=None, attention=None,
                    **processor_options):
    """(model, processor, device, dtype, attention) from a save_pretrained directory; safetensors only."""
    require("transformers", "vlm")
    if weights is None or not weights.is_dir():
        raise MissingWeights(f"{record.name}: weights must be a save_pretrained directory, got {weights}.")
    device, dtype = pick_device(device, dtype)
    attention = attention or attention_backend(device)
    model = model_class.from_pretrained(weights, dtype=dtype, attn_implementation=attention, use_safetensors=True,
                                        local_files_only=True)
    processor = processor_class.from_pretrained(weights, local_files_only=True, **processor_options)
    return model.to(device).eval(), processor, device, dtype, attention


def sequence_logprobs(logits, targets, mask):
    """Sum of log p(target token) over the positions where mask is 1, one total per row."""
    import torch

    logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (logprobs * mask).sum(-1)


def predictions(scores, labels, top_k):
    """Prediction lists (sorted, softmax over the label scores) from a rows-by-labels score tensor."""
    import torch

    from .model import Prediction

    probs = torch.softmax(scores.float(), dim=-1)
    values, picks = probs.topk(min(top_k, len(labels)), dim=-1)
    return [[Prediction(labels[i], i, v) for i, v in zip(p, val)] for p, val in zip(picks.tolist(), values.tolist())]
