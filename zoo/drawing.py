"""Draw detections onto copies of the input images."""

from pathlib import Path

from .inputs import load_image


class Drawer:
    """Saves copies of input images with their boxes and labels drawn into `folder`, a file name for each."""

    def __init__(self, folder):
        self.folder, self.used, self.count = folder, set(), 0

    def draw(self, item, detections, name=None):
        """Writes `item` with its detections drawn, in a file named for `name` (the input's key in a results file;
        default: `item`); returns the path written."""
        from PIL import ImageDraw

        from .files import atomic_path

        image = load_image(item)
        pen = ImageDraw.Draw(image)
        for d in detections:
            x0, y0, x1, y1 = d.box
            box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))  # a model may give the corners swapped
            pen.rectangle(box, outline=(255, 0, 0), width=max(1, image.width // 200))
            pen.text((box[0] + 2, box[1] + 2), d.label, fill=(255, 0, 0))
        self.count += 1
        path = self.folder / f"{unique(stem_of(item if name is None else name, self.count - 1), self.used)}.boxes.png"
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG")
        return path


def stem_of(name, number):
    """A file's stem, a video frame's with its time (`clip.mp4#t=1.500`: clip-t1.500), else image<number>."""
    if not isinstance(name, (str, Path)) or str(name).startswith("data:"):
        return f"image{number}"
    video, mark, time = str(name).rpartition("#t=")
    return f"{Path(video).stem}-t{time}" if mark else Path(name).stem


def unique(stem, used):
    """stem, or stem-2, stem-3 ... when inputs from different folders share a file name."""
    name, n = stem, 1
    while name in used:
        n += 1
        name = f"{stem}-{n}"
    used.add(name)
    return name
