"""Accuracy of any classify-capable model on a Dataset: top-1/top-5, per class, confusion matrix."""

from .errors import ZooError


def predict(model, data, *, labels=None, progress=None):
    """Top-5 dataset-class indices for every item, streamed through model.classify_stream."""
    index = {name: i for i, name in enumerate(data.classes)}
    return [[index[p.label] for p in result if p.label in index]
            for result in model.classify_stream(data.items, top_k=5, labels=labels, progress=progress)]


def score(predictions, targets, classes):
    n = len(targets)
    if n == 0:
        raise ZooError("No images to evaluate on.")
    k = len(classes)
    confusion = [[0] * k for _ in range(k)]
    top1 = top5 = 0
    for pred, target in zip(predictions, targets):
        first = pred[0] if pred else None
        top1 += first == target
        top5 += target in pred[:5]
        if first is not None:
            confusion[target][first] += 1
    # An image whose top-5 holds no dataset label has no confusion entry, but still counts as wrong.
    per_class = {c: confusion[i][i] / max(1, targets.count(i)) for i, c in enumerate(classes)}
    return {"top1": top1 / n, "top5": top5 / n, "n": n, "per_class": per_class, "confusion": confusion}


def accuracy(model, data, *, labels=None, progress=None):
    return score(predict(model, data, labels=labels, progress=progress), data.targets, data.classes)
