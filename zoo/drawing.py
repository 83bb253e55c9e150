"""Draw detections onto copies of the input images."""

from pathlib import Path

from .inputs import load_image
from .streaming import iter_inputs


def draw_detections(inputs, results, folder):
    """Save each input with its boxes and labels drawn; returns the written paths."""
    from PIL import ImageDraw

    from .files import atomic_path

    written, used = [], set()
    for number, (item, detections) in enumerate(zip(iter_inputs(inputs), results)):
        image = load_image(item)
        pen = ImageDraw.Draw(image)
        for d in detections:
            x0, y0, x1, y1 = d.box
            box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))  # a model may give the corners swapped
            pen.rectangle(box, outline=(255, 0, 0), width=max(1, image.width // 200))
            pen.text((box[0] + 2, box[1] + 2), d.label, fill=(255, 0, 0))
        path = folder / f"{unique(stem_of(item, number), used)}.boxes.png"
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG")
        written.append(path)
    return written


def stem_of(item, number):
    return Path(item).stem if isinstance(item, (str, Path)) and not str(item).startswith("data:") else f"image{number}"


def unique(stem, used):
    """stem, or stem-2, stem-3 ... when inputs from different folders share a file name."""
    name, n = stem, 1
    while name in used:
        n += 1
        name = f"{stem}-{n}"
    used.add(name)
    return name
