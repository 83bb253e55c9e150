"""Benchmark datasets: CIFAR-10 (python layout), image folders, and a bundled CIFAR-10 sample."""

import contextlib
import importlib.resources
import os
import pickle
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import UnknownDataset, ZooError, printable
from .files import as_path, file_digest
from .hookspecs import hookimpl
from .labels import CIFAR10
from .config import offline

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_ARCHIVE = ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")  # md5
CIFAR_MAX_BYTES, CIFAR_SECONDS = 200 * 2**20, 3600


@dataclass
class Dataset:
    """`items` are model inputs (HWC uint8 arrays or paths); `targets` index into `classes`."""

    name: str
    split: str
    classes: tuple
    items: list
    targets: list

    def __len__(self):
        return len(self.items)

    def subset(self, limit, seed=0):
        """A seeded random subset of `limit` items, in dataset order, so runs compare the same images."""
        if limit is None or limit >= len(self):
            return self
        import numpy as np

        keep = sorted(np.random.default_rng(seed).choice(len(self), size=limit, replace=False).tolist())
        return Dataset(self.name, self.split, self.classes, [self.items[i] for i in keep], [self.targets[i] for i in keep])


class CifarUnpickler(pickle.Unpickler):
    """Builds only what a CIFAR batch holds (dicts, lists, strings, numbers, numpy arrays): no code runs."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("copyreg", "_reconstructor"), ("builtins", "object"),
               ("_codecs", "encode"), ("builtins", "bytes"), ("__builtin__", "bytes")}  # how protocol 2 writes bytes from Python 3: latin-1 text back to bytes

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise ZooError(f"refusing to unpickle {module}.{name}: a CIFAR-10 batch holds only arrays and lists")
        return super().find_class(module, name)


def read_cifar_batch(path):
    """(images NHWC uint8, labels) of one batch file, checked: no code runs, and a damaged file says so."""
    import numpy as np

    try:
        with open(path, "rb") as f:
            batch = CifarUnpickler(f, encoding="latin1").load()
    except ZooError as e:
        raise ZooError(f"{path}: {e}.") from None
    except Exception as e:  # a truncated or garbage file fails in many ways inside pickle
        raise ZooError(f"{path} is not a readable CIFAR-10 batch ({type(e).__name__}: {e}).") from None
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()} if isinstance(batch, dict) else {}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or not len(data):
        raise ZooError(f"{path}: expected 'data' of N x 3072 pixel values, got {getattr(data, 'shape', type(data))}.")
    if not isinstance(labels, list) or len(labels) != len(data) or not all(
            isinstance(v, int) and 0 <= v < len(CIFAR10) for v in labels):
        raise ZooError(f"{path}: expected {len(data)} 'labels' between 0 and 9.")
    if data.dtype != np.uint8 and (data.min() < 0 or data.max() > 255):
        raise ZooError(f"{path}: pixel values outside 0..255.")
    return np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def cifar_batches(root, split):
    """(images NHWC uint8, labels) read straight from the pickled batches; no md5 check on names."""
    import numpy as np

    folder = cifar_folder(root)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    batches = [read_cifar_batch(folder / name) for name in names]
    return np.ascontiguousarray(np.concatenate([b[0] for b in batches])), [v for b in batches for v in b[1]]


def cifar_folder(root):
    """The cifar-10-batches-py folder under `root` (or `root` itself); downloads it when allowed."""
    if root is None:
        raise ZooError(f"CIFAR-10 needs --data-root: a folder holding {CIFAR_DIR}/ (or that folder itself).")
    root = as_path(root)
    if root.exists() and not root.is_dir():
        raise ZooError(f"--data-root {root} is a file: point it at a folder holding {CIFAR_DIR}/ (or that folder).")
    for folder in (root, root / CIFAR_DIR):
        if (folder / "test_batch").is_file() and (folder / "data_batch_1").is_file():
            return folder
    if offline():
        raise ZooError(
            f"CIFAR-10 not found: expected {root / CIFAR_DIR} with data_batch_1..5 and test_batch, "
            "and downloads are off (ZOO_OFFLINE/HF_HUB_OFFLINE). Point --data-root at it."
        )
    download_cifar(root)
    return root / CIFAR_DIR


def download_cifar(root):
    """The CIFAR-10 archive, checked and unpacked in a scratch folder inside `root`, then moved into place with one
    rename: a failed or interrupted download leaves nothing behind, not even the folders it made."""
    made = [p for p in (root, *root.parents) if not p.exists()]  # the deepest first
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=".cifar-download-") as scratch:
            unpack_cifar(Path(scratch))
            os.replace(Path(scratch) / CIFAR_DIR, root / CIFAR_DIR)
    except BaseException as e:  # Ctrl-C included
        for folder in made:
            with contextlib.suppress(OSError):  # rmdir removes only an empty folder
                folder.rmdir()
        if not isinstance(e, (OSError, tarfile.TarError, ZooError)):
            raise
        reason = str(e).rstrip(".")
        raise ZooError(f"CIFAR-10 not found in {root / CIFAR_DIR}, and downloading it failed: {reason}. Point "
                       f"--data-root at a folder holding {CIFAR_DIR}/, or try again.") from None


def unpack_cifar(scratch):
    from .inputs import download

    url, md5 = CIFAR_ARCHIVE
    archive = scratch / url.rsplit("/", 1)[1]
    print(f"Downloading CIFAR-10 (163 MB) from {url}", file=sys.stderr, flush=True)  # stdout may be --json
    with open(archive, "wb") as file:
        download(url, file, "CIFAR-10 archive", CIFAR_MAX_BYTES, CIFAR_SECONDS)
    if file_digest(archive, "md5") != md5:
        raise ZooError(f"{url} is not the CIFAR-10 archive: its md5 differs from the published {md5}.")
    with tarfile.open(archive) as tar:  # the published archive; the filter also refuses links and paths outside
        tar.extractall(scratch, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def cifar10(root=None, split="test"):
    if split not in ("train", "test"):
        raise ZooError(f"CIFAR-10 has splits 'train' and 'test', not {split!r}.")
    images, labels = cifar_batches(root, split)
    return Dataset("cifar10", split, CIFAR10, list(images), labels)


def cifar10_sample(root=None, split="test"):
    """200 real CIFAR-10 test images shipped with zoo: 'train' and 'test' are alternate halves, 'all' both."""
    import numpy as np

    if split not in ("train", "test", "all"):
        raise ZooError(f"cifar10-sample has splits 'train', 'test' and 'all', not {split!r}.")
    with importlib.resources.files("zoo").joinpath("data/cifar10-sample.npz").open("rb") as f:
        data = np.load(f)
        images, labels = list(data["images"]), data["labels"].tolist()
    keep = {"train": slice(0, None, 2), "test": slice(1, None, 2), "all": slice(None)}[split]
    return Dataset("cifar10-sample", split, CIFAR10, images[keep], labels[keep])


def image_folder(root=None, split=None):
    """ROOT/<class>/<image> (or ROOT/<split>/<class>/<image>); classes sorted by folder name."""
    if root is None:
        raise ZooError("An image-folder dataset needs --data-root: a folder with one subfolder per class.")
    root = as_path(root)
    has_split = bool(split) and (root / split).is_dir()
    root = root / split if has_split else root
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    items, targets = [], []
    for index, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                items.append(path)
                targets.append(index)
    if not items:
        raise ZooError(f"No images found in {root}: expected one subfolder per class holding image files.")
    # Without split folders every split is the same images: "all" says so (a probe refuses to train on it). Names
    # go into results and labels as text, whatever bytes the folders' names hold.
    return Dataset(printable(root.name), split if has_split else "all", tuple(map(printable, classes)), items, targets)


@hookimpl
def register_datasets(register):
    register("cifar10", cifar10)
    register("cifar10-sample", cifar10_sample)
    register("imagefolder", image_folder)


def dataset_factories():
    """name -> factory from every plugin; a name another plugin registered is refused (and reported)."""
    from .plugins import Names, call_each

    factories = Names("dataset")
    call_each("register_datasets", lambda owner: {
        "register": lambda name, fn, override=False: factories.add(name, fn, owner, override)})
    return factories.values


def get_dataset(name, root=None, split="test"):
    """A registered dataset by name; a directory path is read as an image folder."""
    factories = dataset_factories()
    if name not in factories:
        if as_path(name).is_dir():
            return image_folder(name, split)
        raise UnknownDataset(f"Unknown dataset {name!r}; known: {', '.join(sorted(factories))}, or a folder path.")
    return factories[name](root=root, split=split)
