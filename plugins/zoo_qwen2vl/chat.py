"""Chats in the official message format, checked before any work and read as qwen-vl-utils reads them.

A chat is a list of {"role": str, "content": str or [part, ...]}; a part is {"type": "text", "text": ...}, an
image ({"image": ...} or {"image_url": ...}), or a video ({"video": a path or a list of frames}), with
qwen-vl-utils' own keys (pixel budgets, frame sampling). qwen-vl-utils and the processor assume this shape and
fail deep inside on anything else; here a chat that is not it is one line naming the part and the fix.
"""

import math

import zoo

TOKEN_SIDE = 28  # pixels a side of one merged vision token: patch 14 x spatial merge 2
SMALLEST_IMAGE = 4 * TOKEN_SIDE ** 2  # qwen-vl-utils' IMAGE_MIN_TOKEN_NUM tokens: its default min_pixels
NUMBERS = ("min_pixels", "max_pixels", "total_pixels", "resized_height", "resized_width", "fps", "nframes",
           "min_frames", "max_frames", "video_start", "video_end")  # what qwen-vl-utils reads from a part
FROM_ZERO = ("video_start", "video_end")  # seconds into a video; every other number is above 0


def is_messages(value):
    """A chat in the original format: a list of {'role': ..., 'content': ...} dicts."""
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def kind(part):
    """'image', 'video' or 'text', as qwen-vl-utils tells them apart."""
    if "image" in part or "image_url" in part or part.get("type") in ("image", "image_url"):
        return "image"
    if "video" in part or part.get("type") == "video":
        return "video"
    return "text"


def check_chat(messages, placeholders):
    """Refuse a chat qwen-vl-utils or the processor would fail on; `placeholders` are the processor's image and
    video tokens, which it counts in the text (one written by hand breaks the count)."""
    for m, message in enumerate(messages):
        where = f"chat message {m}"
        if not isinstance(message.get("role"), str) or not message["role"].strip():
            raise zoo.BadInput(f"{where}: 'role' must be a name such as 'user' or 'system'.")
        content = message.get("content")
        if isinstance(content, str):
            check_text(content, where, placeholders)
        elif isinstance(content, (list, tuple)) and content:
            for p, part in enumerate(content):
                check_part(part, f"{where}, part {p}", placeholders)
        else:
            raise zoo.BadInput(f"{where}: 'content' must be text or a non-empty list of parts such as "
                               "{'type': 'image', 'image': PATH} and {'type': 'text', 'text': ...}.")
        check_text(message["role"], where, placeholders)


def check_part(part, where, placeholders):
    if not isinstance(part, dict):
        raise zoo.BadInput(f"{where}: expected a dict such as {{'type': 'text', 'text': ...}}, got "
                           f"{type(part).__name__}.")
    what = kind(part)
    if what == "image" and part.get("image", part.get("image_url")) is None:
        raise zoo.BadInput(f"{where}: an image part needs 'image' (a path, URL or image).")
    if what == "video" and not (isinstance(part.get("video"), str) or hasattr(part.get("video"), "__fspath__")
                                or isinstance(part.get("video"), (list, tuple)) and part["video"]):
        raise zoo.BadInput(f"{where}: a video part needs 'video': a path, or a non-empty list of frames.")
    if what == "text":
        if not isinstance(part.get("text"), str):
            raise zoo.BadInput(f"{where}: a text part needs 'text', a string.")
        check_text(part["text"], where, placeholders)
    for key in (k for k in NUMBERS if k in part):
        value, least = part[key], "0 or more" if key in FROM_ZERO else "above 0"
        if not is_number(value) or value < 0 or (value == 0 and key not in FROM_ZERO):
            raise zoo.BadInput(f"{where}: {key}={value!r} must be a finite number, {least}.")


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_text(text, where, placeholders):
    written = next((token for token in placeholders if token in text), None)
    if written:
        raise zoo.BadInput(f"{where}: the text holds {written}, which the processor puts where each image or "
                           "video goes; pass images and videos as parts instead.")


def with_budget(part, budget):
    """An image or video part with the model-wide defaults it does not set itself.

    An image budget below one 2x2-token image is refused (qwen-vl-utils would make an empty image). A video
    max_pixels below qwen-vl-utils' default video min_pixels lowers min_pixels to the image floor:
    qwen-vl-utils asserts min <= max, and a user who asks for fewer pixels means it.
    """
    from qwen_vl_utils.vision_process import VIDEO_MIN_TOKEN_NUM

    if "video" in part and ("fps" in part or "nframes" in part):
        budget = {}  # the part's own sampling: qwen-vl-utils takes fps or nframes, not both
    part = {**budget, **part}
    for key in ("min_pixels", "max_pixels"):
        if "image" in part and part.get(key, SMALLEST_IMAGE) < SMALLEST_IMAGE:
            raise zoo.BadInput(f"{key}={part[key]}: Qwen2-VL's smallest image is {SMALLEST_IMAGE} pixels "
                               "(2x2 tokens of 28x28); ask for at least that.")
    if "video" in part and part.get("max_pixels", math.inf) < VIDEO_MIN_TOKEN_NUM * TOKEN_SIDE ** 2:
        part.setdefault("min_pixels", min(SMALLEST_IMAGE, part["max_pixels"]))
    if part.get("min_pixels", 0) > part.get("max_pixels", math.inf):
        raise zoo.BadInput(f"min_pixels={part['min_pixels']} is above max_pixels={part['max_pixels']}: "
                           "give a minimum no larger than the maximum.")
    return part
