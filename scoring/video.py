"""Video decoding for AV-Align (PyAV): greyscale frames one at a time, with their times."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from scoring.audio import InputError


def video_fps(path: str | Path) -> float:
    """Average frame rate of the first video stream (what OpenCV's ``CAP_PROP_FPS`` reports)."""
    with _open(path) as container:
        rate = container.streams.video[0].average_rate
        if not rate:
            raise InputError(f"{path}: video has no frame rate")
        return float(rate)


def grey_frames(path: str | Path, max_seconds: float | None = None,
                width: int | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(time_seconds, grey uint8 [H, W])`` for each decoded frame, times relative to the first frame.

    ``width`` scales frames down (aspect kept) while converting; ``None`` keeps the native size. Greyscale uses
    the same RGB weights as OpenCV's ``COLOR_BGR2GRAY`` on OpenCV-decoded frames, as the AV-Align reference does.
    """
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        size = _scaled_size(stream.codec_context.width, stream.codec_context.height, width)
        first = None
        try:
            for frame in container.decode(stream):
                time = float(frame.time or 0.0)
                first = time if first is None else first
                if max_seconds is not None and time - first >= max_seconds:
                    break
                rgb = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
                yield time - first, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        except av.error.FFmpegError as error:
            raise InputError(f"{path}: video is corrupt or truncated ({str(error).splitlines()[0][:160]})") from None


def native_width(path: str | Path) -> int:
    """Width in pixels of the first video stream."""
    with _open(path) as container:
        return container.streams.video[0].codec_context.width


def _scaled_size(w: int, h: int, width: int | None) -> tuple[int, int]:
    if width is None or width >= w:
        return w, h
    return width, max(8, round(h * width / w / 2) * 2)


def _open(path: str | Path) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such video file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not a readable video ({str(error).splitlines()[0][:160]})") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: has no video stream")
    return container
