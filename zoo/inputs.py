"""Turn what users pass (paths, URLs, data: URIs, PIL images, arrays, tensors) into RGB PIL images.

Anything else, or anything unreadable, is a BadInput naming the input and what to pass instead.
"""

import base64
import binascii
import contextlib
import hashlib
import http.client
import io
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from .config import env_number, offline
from .errors import BadInput, require
from .files import as_path
from .streaming import Failed, is_file_object, is_tensor

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
EMPTY_PATH = "An empty string is not an image path: pass a file's path."  # Path("") would be the current folder
MAX_IMAGE_PIXELS = 178_956_970  # PIL's own bomb limit; ZOO_MAX_IMAGE_PIXELS changes it
MAX_DOWNLOAD_BYTES = 64 * 2**20  # an image URL
DOWNLOAD_SECONDS = 60
MAX_VIDEO_DOWNLOAD_BYTES = 2**30  # a video URL, copied to a temporary file
VIDEO_DOWNLOAD_SECONDS = 600
MAX_KEY = 4096  # characters of an input's text kept whole as its key (a path is at most 4 KiB)
URL_PREFIXES = ("http://", "https://")
IMAGE_RECORD = {"bytes", "path"}  # the fields of an image as Hugging Face datasets stores it (and Ray reads it)


def is_video(item):
    """Whether a path or URL names a video, by its suffix (a URL's query and fragment left out)."""
    return isinstance(item, (str, Path)) and not str(item).startswith("data:") and suffix(item) in VIDEO_SUFFIXES


def suffix(item):
    text = str(item)
    return Path(urllib.parse.urlsplit(text).path if text.startswith(URL_PREFIXES) else text).suffix.lower()


def max_pixels():
    return env_number("ZOO_MAX_IMAGE_PIXELS", MAX_IMAGE_PIXELS)


def load_image(item):
    """An RGB image, turned upright by its EXIF orientation."""
    from PIL import ImageOps

    return ImageOps.exif_transpose(open_image(item)).convert("RGB")


def open_image(item):
    """The image as decoded (its own mode, alpha kept, no EXIF turn), checked: for upstream code that converts
    images itself, as qwen-vl-utils does (white under alpha)."""
    from PIL import Image

    if isinstance(item, Image.Image):
        return _convertible(_check_size(item, "The image"))
    if isinstance(item, Failed):  # an input its source could not read
        raise BadInput(item.error)
    if is_video(item):
        raise BadInput(f"{item} is a video; this model reads images: zoo.run (--out on the command line) gives it "
                       "the video's frames (fps=), and Qwen2-VL models describe whole videos.")
    if isinstance(item, str) and item.startswith(URL_PREFIXES):
        download(item, buffer := io.BytesIO(), "image", MAX_DOWNLOAD_BYTES, DOWNLOAD_SECONDS)
        buffer.seek(0)
        return _decode(buffer, item)
    if isinstance(item, str) and item.startswith("data:"):
        return _decode(_data_uri(item), input_key(item))
    if isinstance(item, str) and not item.strip():
        raise BadInput(EMPTY_PATH)
    if isinstance(item, (str, Path)):
        return _open(as_path(item))
    if is_tensor(item):
        return _from_tensor(item)
    if type(item).__module__ == "numpy":
        return _from_array(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return _decode(bytes(item), f"The {type(item).__name__} object")
    if is_file_object(item):
        return _decode(item, getattr(item, "name", "The file object"))
    if isinstance(item, dict) and set(item) == IMAGE_RECORD:
        if item["bytes"] is None and item["path"] is None:
            raise BadInput("The image record holds neither bytes nor a path.")
        return open_image(item["path"] if item["bytes"] is None else item["bytes"])
    if isinstance(item, dict):  # most often a dataset's row: name the column that holds the image
        raise BadInput(f"Cannot read an image from a dict with keys {', '.join(map(str, item))[:200]}: pass the "
                       "image it holds (a dataset's rows: (row['image'] for row in dataset)).")
    raise BadInput(f"Cannot read an image from {type(item).__name__}: pass a path, a URL, a PIL image, the bytes "
                   "of an image file (or a binary file object), a numpy HWC uint8 array, a CHW/NCHW tensor, or a "
                   "Hugging Face datasets image record ({'bytes': ..., 'path': ...}).")


def _open(path):
    with open(existing_file(path, "an image"), "rb") as f:
        return _decode(f, path)


def existing_file(path, what):
    """`path` when it names a file; else one line saying what it names instead. `what`: 'an image', 'a video'."""
    noun = what.split()[-1]
    try:
        if path.is_dir():
            raise BadInput(f"{path} is a folder, not {what}: pass the {noun} files in it.")
        if path.exists() and not path.is_file():  # opening a pipe would wait for a writer, forever
            raise BadInput(f"{path} is not a regular file (a pipe, socket or device): pass {what} file.")
        if not path.is_file():
            raise BadInput(f"{noun.capitalize()} file not found: {path}")
    except OSError as e:  # a name too long for the file system, say
        raise BadInput(f"{str(path)[:80]}...: not a usable path ({e.strerror}).") from None
    return path


def _decode(source, name):
    """A file object (or bytes) -> a loaded image within the pixel limit, 16-bit greyscale scaled to 8 bits."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with Image.open(source) as image:
            _check_size(image, name)
            image.load()
            return _convertible(image)
    except Image.DecompressionBombError:
        raise BadInput(f"{name}: the image is larger than zoo's limit of {max_pixels()} pixels "
                       "(raise ZOO_MAX_IMAGE_PIXELS if you trust it).") from None
    except UnidentifiedImageError:
        raise BadInput(f"{name} is not a readable image (no image format that Pillow reads).") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise BadInput(f"{name} is not a readable image ({e}).") from None


def _check_size(image, name):
    check_pixels(name, *image.size)
    return image


def check_pixels(name, width, height, what="the image"):
    """An image (or each frame of a video, decoded whole) must fit zoo's pixel limit: decompression bombs."""
    if width * height > max_pixels():
        raise BadInput(f"{name}: {width}x{height} is larger than zoo's limit of {max_pixels()} pixels for {what} "
                       "(raise ZOO_MAX_IMAGE_PIXELS if you trust it).")
    if width * height == 0:
        raise BadInput(f"{name}: {what} is empty ({width}x{height}).")


@contextlib.contextmanager
def open_video(path):
    """(PyAV container, its first video stream), checked before any decoding: a stream to decode, frames within
    the pixel limit. Text metadata that is not UTF-8 never stops a video from being read."""
    av = require("av", "video")
    # PyAV before 19 fails on text metadata that is not UTF-8 unless told to skip it; 19 never fails on it, and
    # has no such argument.
    lenient = {"metadata_errors": "ignore"} if int(av.__version__.split(".")[0]) < 19 else {}
    with av.open(str(existing_file(Path(path), "a video")), **lenient) as container:
        if not container.streams.video:
            raise BadInput(f"{path} has no video stream.")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise BadInput(f"{path} is not a readable video (no decoder for its video stream: a damaged file, or a "
                           "codec this PyAV lacks).")
        check_pixels(path, stream.width, stream.height, "a video frame")
        yield container, stream


def _convertible(image):
    """An image PIL can convert to RGB as it looks: 16-bit greyscale keeps its top 8 bits (a plain convert would
    clip it to white); premultiplied greyscale with alpha (La) becomes LA, the one mode PIL converts it to."""
    import numpy as np
    from PIL import Image

    if image.mode == "La":
        return image.convert("LA")
    if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
        return image
    values = np.asarray(image, dtype=np.int64)
    top = 65535 if image.mode.startswith("I;16") or values.max() > 255 else 255
    scaled = Image.fromarray((values.clip(0, top) * 255 // top).astype(np.uint8))
    scaled.info = image.info
    return scaled


def _data_uri(uri):
    header, sep, payload = uri.partition(",")
    if not sep or not header.endswith(";base64"):
        raise BadInput(f"{input_key(uri)}: zoo reads data: URIs in base64 (data:image/png;base64,...).")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"{input_key(uri)}: the base64 payload is damaged.") from None


def input_key(text):
    """How a results file names an input given as text: as written, up to MAX_KEY characters (every usable path);
    a data: URI, which holds a whole image, by its media type and the sha256 of it all (the first few hundred
    characters of JPEGs written alike are the same); anything longer by its start and the sha256 of it all."""
    if not text.startswith("data:") and len(text) <= MAX_KEY:
        return text
    digest = hashlib.sha256(text.encode(errors="surrogatepass")).hexdigest()
    start = text.partition(",")[0][:100] + "," if text.startswith("data:") else text[:200]
    return f"{start}...#sha256={digest}"


def check_online(url, what):
    if offline():
        raise BadInput(f"{url}: {what} URLs need the network, and downloads are off (ZOO_OFFLINE/HF_HUB_OFFLINE). "
                       f"Download the {what} and pass its path.")


def download(url, file, what, limit, seconds, timeout=DOWNLOAD_SECONDS):
    """Write what a URL holds to a binary file; refused while offline, bounded in size (`limit` bytes) and time
    (`seconds` in all, `timeout` for each read), redirected only to http(s)."""
    check_online(url, what)
    deadline, size = time.monotonic() + seconds, 0
    try:
        with urllib.request.build_opener(_WebRedirects).open(url, timeout=timeout) as response:
            declared = response.headers.get("Content-Length", "")
            while size <= limit and (chunk := response.read(2**20)):
                size += file.write(chunk)
                if time.monotonic() > deadline:  # the timeout bounds each read; this bounds a trickle
                    raise TimeoutError(f"still downloading after {seconds} s")
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise BadInput(f"{url}: could not download the {what} ({e}).") from None
    if size > limit:
        raise BadInput(f"{url}: larger than {limit // 2**20} MB; download it and pass its path.")
    if declared.isdigit() and size < int(declared):  # urllib ends a cut-off body quietly; a short video still plays
        raise BadInput(f"{url}: could not download the {what} (the connection closed after {size} of {declared} "
                       "bytes); try again.")


@contextlib.contextmanager
def video_file(video):
    """The file to read a video (a path or URL) from, a URL's being a temporary copy removed afterwards, in a
    context where PyAV's errors become a BadInput and every error names the video as given, not its copy."""
    av = require("av", "video")
    url = str(video).startswith(URL_PREFIXES)
    with _copy(video) if url else contextlib.nullcontext(Path(video)) as path:
        try:
            yield path
        except (av.error.FFmpegError, BadInput) as e:
            message = str(e) if isinstance(e, BadInput) else f"{path} is not a readable video ({e})."
            raise BadInput(message.replace(str(path), video) if url else message) from None


@contextlib.contextmanager
def _copy(url):
    with tempfile.TemporaryDirectory(prefix="zoo-video-") as folder:
        path = Path(folder, "video" + (suffix(url) if is_video(url) else ""))  # the suffix can name the format
        with open(path, "wb") as file:
            download(url, file, "video", MAX_VIDEO_DOWNLOAD_BYTES, VIDEO_DOWNLOAD_SECONDS)
        yield path


class _WebRedirects(urllib.request.HTTPRedirectHandler):
    """urllib also follows redirects to ftp://; an image or video URL may lead only to other web addresses."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not newurl.lower().startswith(URL_PREFIXES):
            raise ValueError(f"it redirects to {newurl.split(':')[0]}:, and zoo follows only http(s)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _from_array(array):
    import numpy as np
    from PIL import Image

    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise BadInput(f"A numpy image must be HxW or HxWxC with C in 1, 3, 4; got shape {array.shape}.")
    if array.dtype != np.uint8:
        raise BadInput(f"A numpy image must be uint8 (0..255); got {array.dtype}. Use array.astype('uint8').")
    if array.size == 0:
        raise BadInput(f"The numpy image is empty (shape {array.shape}).")
    return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")


def _from_tensor(tensor):
    import torch

    if tensor.is_meta:
        raise BadInput("A meta tensor holds no pixels: materialise it (tensor.to('cpu') after filling it) first.")
    if tensor.layout != torch.strided:
        raise BadInput(f"A tensor image must be dense; got a {tensor.layout} tensor: pass tensor.to_dense().")
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise BadInput(f"A tensor image must be CHW (or NCHW) with 1 or 3 channels; got shape {tuple(tensor.shape)}.")
    if tensor.numel() == 0:
        raise BadInput(f"The tensor image is empty (shape {tuple(tensor.shape)}).")
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        if not tensor.isfinite().all() or tensor.min() < 0 or tensor.max() > 1:
            raise BadInput("A float tensor image must hold finite values in [0, 1]; pass uint8 for 0..255.")
        tensor = (tensor * 255).round().to(torch.uint8)
    elif tensor.dtype != torch.uint8:
        raise BadInput(f"A tensor image must be uint8 or float in [0, 1]; got {tensor.dtype}.")
    return _from_array(tensor.permute(1, 2, 0).numpy())
