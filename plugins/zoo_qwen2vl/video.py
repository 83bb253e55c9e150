"""Video for qwen-vl-utils through PyAV, the same on every machine (torchvision 0.29 has no read_video).

`read_video` keeps the contract and the sampling of qwen-vl-utils' torchvision reader
(`_read_video_torchvision`: frames between video_start and video_end, `smart_nframes` frames at
`linspace(0, total - 1, n).round()`); it counts the frames from the packets' timestamps, without decoding,
and decodes only up to the last frame it keeps. A URL is read from a temporary copy, downloaded as zoo downloads
image URLs (refused offline, bounded in size and time). Everything after reading (the video pixel budget, resizing,
sample fps) stays qwen-vl-utils' own `fetch_video`.
"""

import threading

from zoo.errors import BadInput
from zoo.files import as_path
from zoo.inputs import URL_PREFIXES, check_online, check_pixels, existing_file, open_video, video_file


def frame_times(path, start, end, *, from_packets=True):
    """(fps, presentation times in s of the frames between start and end, as torchvision's read_video keeps them).

    From the packets' timestamps (no decoding) when every packet has one, else from decoding every frame.
    """
    with open_video(path) as (container, stream):
        fps, base = float(stream.average_rate or 0) or 1.0, stream.time_base
        stamps = [p.pts for p in container.demux(stream) if p.size] if from_packets else [None]
    if None in stamps:
        with open_video(path) as (container, stream):  # a new pass: some streams cannot seek
            stamps = [f.pts for f in container.decode(stream) if f.pts is not None]
    times = sorted(float(pts) * base.numerator / base.denominator for pts in stamps)  # as av's frame.time
    return fps, [t for t in times if t >= start and (end is None or t <= end)]


def decode_kept(path, keep):
    """{time: CHW uint8 frame} for the frames at the times in `keep`; stops after the last one."""
    import torch

    decoded, size = {}, None
    with open_video(path) as (container, stream):
        for frame in container.decode(stream):
            if frame.time in keep:
                check_pixels(path, frame.width, frame.height, "a video frame")
                if (size := size or (frame.width, frame.height)) != (frame.width, frame.height):
                    raise BadInput(f"{path}: its frames change size ({size[0]}x{size[1]}, then {frame.width}x"
                                   f"{frame.height}); Qwen2-VL reads a video as frames of one size.")
                decoded[frame.time] = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
                if len(decoded) == len(keep):
                    break
    return decoded


def sample(path, ele, *, from_packets):
    """(TCHW frames, metadata, sample fps) as qwen-vl-utils samples them; None when a frame the packets
    announced was never decoded."""
    import torch
    from qwen_vl_utils.vision_process import smart_nframes

    fps, times = frame_times(path, ele.get("video_start", 0.0), ele.get("video_end", None),
                             from_packets=from_packets)
    if len(times) < 2:
        raise BadInput(f"{path} has {len(times)} video frame(s) in range; a video needs at least 2 "
                       "(pass a still as an image).")
    try:
        nframes = smart_nframes(ele, total_frames=len(times), video_fps=fps)
    except ValueError as e:  # the sampling asked for does not fit the video
        raise BadInput(f"{path}: {e}") from None
    index = torch.linspace(0, len(times) - 1, nframes).round().long()
    kept = [times[i] for i in index.tolist()]  # rounding may sample a frame twice
    decoded = decode_kept(path, set(kept))
    if not set(kept) <= decoded.keys():
        return None
    metadata = dict(fps=fps, frames_indices=index, total_num_frames=len(times), video_backend="pyav")
    return torch.stack([decoded[t] for t in kept]), metadata, nframes / len(times) * fps


def read_video(ele):
    """(TCHW uint8 frames, metadata, sample fps) for a qwen-vl-utils video element: a path, or a URL read from a
    temporary copy."""
    with video_file(video_source(ele["video"])) as path:
        result = sample(path, ele, from_packets=True) or sample(path, ele, from_packets=False)
        if result is None:
            raise BadInput(f"{path} is not a readable video (its frames decode differently on each pass).")
    return result


def video_source(value):
    """A video part's file (checked to exist) or URL (while downloads are allowed), as text."""
    text = str(value)
    if text.startswith(URL_PREFIXES):
        check_online(text, "video")
        return text
    return str(existing_file(as_path(text), "a video"))


_reading = threading.local()  # on each thread: `active` while zoo reads a chat's media, `failed` for read_once


def vision_info(chat):
    """(images, videos) of a chat from qwen-vl-utils' process_vision_info, its videos read by zoo's reader; only
    in this call, on this thread: qwen-vl-utils called by other code in the process reads as it would alone."""
    from qwen_vl_utils import process_vision_info

    _reading.active = True
    try:
        return process_vision_info(chat)
    finally:
        _reading.active = False


def zoo_reads():
    return getattr(_reading, "active", False)


def read_once(ele):
    """read_video, except that the retry qwen-vl-utils makes after a failure (the same element, to the same
    reader: this one) raises the first error again instead of reading, or downloading, the video twice."""
    failed, _reading.failed = getattr(_reading, "failed", None), None
    if failed and failed[0] is ele:
        raise failed[1]
    try:
        return read_video(ele)
    except BadInput as e:
        _reading.failed = ele, e
        raise


def not_a_retry(record):
    """qwen-vl-utils logs a failed read before trying the same reader again; zoo's own error says it once."""
    return not (zoo_reads() and record.getMessage().startswith("video_reader_backend"))


def install():
    """Make zoo's reader the one qwen-vl-utils reads videos with inside `vision_info`. Left to itself,
    qwen-vl-utils picks torchcodec or decord when installed, else torchvision's read_video (gone in torchvision
    0.29), and retries a failed read with torchvision's: each would skip zoo's checks (URLs only while online and
    bounded, the pixel limit before decoding, one-line errors) and sample frames differently from one machine to
    the next. Once per process; outside vision_info, qwen-vl-utils' own choice and readers stand."""
    import logging

    from qwen_vl_utils import vision_process

    if getattr(vision_process.get_video_reader_backend, "zoo", False):
        return
    choice, reader = vision_process.get_video_reader_backend, vision_process.VIDEO_READER_BACKENDS["torchvision"]

    def backend():
        return "torchvision" if zoo_reads() else choice()  # zoo's choice also quiets its line on stderr per video

    backend.zoo = True
    vision_process.get_video_reader_backend = backend
    vision_process.VIDEO_READER_BACKENDS["torchvision"] = lambda ele: read_once(ele) if zoo_reads() else reader(ele)
    logging.getLogger(vision_process.__name__).addFilter(not_a_retry)
