"""Video frames with PyAV (torchvision 0.29 has no read_video), sampled as qwen_vl_utils samples them."""

from pathlib import Path

from zoo.errors import BadInput, require


def read_frames(path, *, fps=2.0, nframes=None):
    """(RGB PIL frames, sampling fps): `nframes` evenly spaced frames, or `fps` frames per second."""
    av = require("av", "vlm")
    from qwen_vl_utils.vision_process import smart_nframes

    if str(path).startswith(("http://", "https://")):
        raise BadInput(f"{path}: zoo reads local videos; download it and pass its path.")
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"Video file not found: {path}")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = float(stream.average_rate or 0) or 1.0
            total = stream.frames or sum(1 for _ in container.decode(video=0))
            if total < 2:
                raise BadInput(f"{path} has {total} video frame(s); a video needs at least 2 (pass a still as an image).")
            container.seek(0)
            wanted = smart_nframes({"fps": fps} if nframes is None else {"nframes": nframes}, total_frames=total,
                                   video_fps=rate)
            keep = {round(i * (total - 1) / max(1, wanted - 1)) for i in range(wanted)}
            frames = [f.to_image() for i, f in enumerate(container.decode(video=0)) if i in keep]
    except (av.error.FFmpegError, IndexError) as e:
        raise BadInput(f"{path} is not a readable video ({e}).") from None
    except ValueError as e:  # smart_nframes: too few frames for the sampling asked for
        raise BadInput(f"{path}: {e}") from None
    if not frames:
        raise BadInput(f"{path} has no video frames.")
    return frames, wanted / total * rate
