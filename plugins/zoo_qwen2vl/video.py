"""Video for qwen-vl-utils through PyAV: torchvision 0.29 has no read_video, which its default reader needs.

`read_video` keeps the contract and the sampling of qwen-vl-utils' torchvision reader
(`_read_video_torchvision`: frames between video_start and video_end, `smart_nframes` frames at
`linspace(0, total - 1, n).round()`); it decodes only the frames it keeps. Everything after reading
(the video pixel budget, resizing, sample fps) stays qwen-vl-utils' own `fetch_video`.
"""

from pathlib import Path

from zoo.errors import BadInput, require
from zoo.inputs import check_pixels


def frame_times(container, start, end):
    """Presentation times (s) of the frames between start and end, as torchvision's read_video keeps them."""
    return [t for t in (f.time for f in container.decode(video=0)) if t >= start and (end is None or t <= end)]


def read_video(ele):
    """(TCHW uint8 frames, metadata, sample fps) for a qwen-vl-utils video element with a local path."""
    import torch
    from qwen_vl_utils.vision_process import smart_nframes

    av = require("av", "vlm")
    path = check_path(ele["video"])
    start, end = ele.get("video_start", 0.0), ele.get("video_end", None)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            check_pixels(path, stream.width, stream.height, "a video frame")
            fps = float(stream.average_rate or 0) or 1.0
            times = frame_times(container, start, end)
            total = len(times)
            if total < 2:
                raise BadInput(f"{path} has {total} video frame(s) in range; a video needs at least 2 "
                               "(pass a still as an image).")
            nframes = smart_nframes(ele, total_frames=total, video_fps=fps)
            index = torch.linspace(0, total - 1, nframes).round().long()
            keep, decoded = {times[i] for i in index.tolist()}, {}
            container.seek(0)
            for frame in container.decode(video=0):
                if frame.time in keep:
                    decoded[frame.time] = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
    except (av.error.FFmpegError, IndexError) as e:
        raise BadInput(f"{path} is not a readable video ({e}).") from None
    except ValueError as e:  # smart_nframes: the sampling asked for does not fit the video
        raise BadInput(f"{path}: {e}") from None
    video = torch.stack([decoded[times[i]] for i in index.tolist()])  # rounding may sample a frame twice
    metadata = dict(fps=fps, frames_indices=index, total_num_frames=total, video_backend="pyav")
    return video, metadata, nframes / max(total, 1e-6) * fps


def check_path(value):
    if str(value).startswith(("http://", "https://")):
        raise BadInput(f"{value}: zoo reads local videos; download it and pass its path.")
    path = Path(str(value).removeprefix("file://"))
    if not path.is_file():
        raise BadInput(f"Video file not found: {path}")
    return path


def install():
    """Supply the reader qwen-vl-utils falls back to when torchvision cannot read video itself."""
    import torchvision.io
    from qwen_vl_utils import vision_process

    if not hasattr(torchvision.io, "read_video"):
        vision_process.VIDEO_READER_BACKENDS["torchvision"] = read_video
