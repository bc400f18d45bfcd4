"""Video probing and single-pass frame sampling for both streams (PyAV).

Why one pass: decoding dominates feature extraction, so each video is decoded once and every decoded frame is
offered to both samplers — the semantic grid (``clip_fps``, colour, CLIP size) and the motion grid (``flow_fps``,
small greyscale). Frames are scaled down by libswscale while they are converted, never held at full size, and
only the sampled frames are kept. Rotated videos (phone footage) are turned upright as players show them.

Sampling is by presentation time, so variable-frame-rate video works: grid point ``k`` of a stream at ``fps`` is
the first decoded frame whose time is at or after ``start + k / fps``; a source slower than the grid yields fewer
samples (each with its true timestamp) instead of duplicates.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from common.errors import UserError


class VideoError(UserError):
    """A file that cannot be used as a video; the message is one line meant for the user."""


@dataclass
class VideoInfo:
    path: str
    duration: float  # seconds of the video stream (container duration when the stream has none)
    fps: float  # average frame rate (0 when unknown)
    width: int
    height: int
    has_audio: bool


@dataclass
class SampledFrames:
    """Frames for the two streams, each with presentation times in seconds from the clip start.

    clip_frames: uint8 [Nc, S, S, 3] RGB, short side resized to S then centre-cropped (CLIP's preprocessing).
    flow_frames: uint8 [Nf, h, w] greyscale, width ``flow_width``, height keeping the aspect ratio.
    """

    clip_frames: np.ndarray
    clip_times: np.ndarray
    flow_frames: np.ndarray
    flow_times: np.ndarray


def _open(path: str | Path) -> av.container.InputContainer:
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.is_dir():
        raise VideoError(f"{path}: is a directory, not a video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, OSError) as error:
        raise VideoError(f"{path}: not a readable video ({_short(error)})") from None


def first_video_stream(container: av.container.InputContainer, path: str | Path) -> av.video.stream.VideoStream:
    """The first video stream, which must have codec parameters a decoder can open (a damaged header can leave
    a stream with no codec, or no picture size): else ``VideoError``."""
    if not container.streams.video:
        raise VideoError(f"{path}: has no video stream")
    stream = container.streams.video[0]
    context = stream.codec_context
    if context is None or not context.width or not context.height:
        raise VideoError(f"{path}: the video stream cannot be decoded (unknown codec or damaged stream header)")
    return stream


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__


def probe_video(path: str | Path) -> VideoInfo:
    """Read stream metadata without decoding; raise ``VideoError`` when there is no video stream."""
    with _open(path) as container:
        stream = first_video_stream(container, path)
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        if duration <= 0 and container.duration is not None:
            duration = container.duration / av.time_base
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        return VideoInfo(str(path), duration, fps, stream.codec_context.width, stream.codec_context.height,
                         bool(container.streams.audio))


def presentation_origin(container: av.container.InputContainer) -> float:
    """Seconds at which the file's timeline starts (``start_time``): MPEG-PS/TS files and cut files often start
    at 0.5 s or later. Every time this package hands out is relative to it, as ffprobe's durations are."""
    return container.start_time / av.time_base if container.start_time is not None else 0.0


def scan_duration(path: str | Path) -> float:
    """Seconds up to the end of the last video packet, read from packet times without decoding (for files whose
    headers carry no duration); 0 when no packet has a time."""
    end = 0.0
    with _open(path) as container:
        stream = first_video_stream(container, path)
        try:
            for packet in container.demux(stream):
                if packet.pts is not None and packet.time_base is not None:
                    end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
        except av.error.FFmpegError:
            pass  # a truncated file: what was read so far
    return end


class _GridSampler:
    """Selects, from frames arriving in time order, the first frame at or after each grid time."""

    def __init__(self, fps: float, start: float):
        self.period = 1.0 / fps
        self.start = start
        self.next_index = 0

    def wants(self, time: float) -> bool:
        """True when ``time`` reaches the next grid point; skips grid points the frame has passed."""
        next_time = self.start + self.next_index * self.period
        if time + 1e-6 < next_time:
            return False
        self.next_index = int((time - self.start + 1e-6) // self.period) + 1
        return True


def _clip_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """[H, W, 3] -> [size, size, 3]: resize the short side to ``size``, then centre-crop (as CLIP does)."""
    h, w = rgb.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    top, left = (nh - size) // 2, (nw - size) // 2
    return resized[top:top + size, left:left + size]


def _flow_grey(rgb: np.ndarray, width: int) -> np.ndarray:
    """[H, W, 3] -> [h, width] greyscale, aspect ratio kept (at least 8 pixels high)."""
    h, w = rgb.shape[:2]
    height = max(8, round(h * width / w))
    return cv2.cvtColor(cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)


def _conversion_size(width: int, height: int, clip_size: int, flow_width: int, quarter_turns: int) -> tuple[int, int]:
    """Smallest coded size (even numbers) still large enough for both streams once displayed (rotated).

    Decode-time downscaling by libswscale saves most of the work on large videos.
    """
    display_width = height if quarter_turns % 2 else width
    scale = min(1.0, max(max(clip_size, 8) / min(width, height), flow_width / display_width))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _quarter_turns(rotation: float | None) -> int:
    """Display rotation in degrees (counter-clockwise, from the stream's display matrix) -> np.rot90's k."""
    return round((rotation or 0) / 90) % 4


def sample_frames(path: str | Path, clip_fps: float, clip_size: int, flow_fps: float, flow_width: int,
                  start: float = 0.0, max_seconds: float | None = None) -> SampledFrames:
    """Decode ``path`` once from ``start`` for up to ``max_seconds`` and sample frames for both streams.

    Raises ``VideoError`` (one line) for files that are missing, not videos, have no video stream, or are
    truncated so that no frame decodes.
    """
    clips, clip_times, flows, flow_times = [], [], [], []
    for kind, time, image in iter_samples(path, clip_fps, clip_size, flow_fps, flow_width, start, max_seconds):
        if kind == "clip":
            clips.append(image), clip_times.append(time)
        else:
            flows.append(image), flow_times.append(time)
    return SampledFrames(np.stack(clips), np.asarray(clip_times, np.float32),
                         np.stack(flows), np.asarray(flow_times, np.float32))


def iter_samples(path: str | Path, clip_fps: float, clip_size: int, flow_fps: float, flow_width: int,
                 start: float = 0.0, max_seconds: float | None = None) -> Iterator[tuple[str, float, np.ndarray]]:
    """The samples of ``sample_frames`` as they are decoded: ``("clip", t, rgb [S, S, 3])`` and
    ``("flow", t, grey [h, w])``, t in seconds from ``start``, in time order.

    A consumer can run CLIP on the first frames while later ones decode (PyAV releases the GIL while decoding).
    """
    clip_grid, flow_grid = _GridSampler(clip_fps, start), _GridSampler(flow_fps, start)
    end = start + max_seconds if max_seconds is not None else float("inf")
    last_flow = None
    with _open(path) as container:
        stream = first_video_stream(container, path)
        stream.thread_type = "AUTO"
        size, turns, origin = None, 0, presentation_origin(container)
        if start > 0:
            container.seek(int((start + origin) / stream.time_base), stream=stream, backward=True)
        try:
            for frame in container.decode(stream):
                time = None if frame.time is None else frame.time - origin  # seconds on the file's timeline
                if time is None or time < start - 1e-6:
                    continue
                if time >= end:
                    break
                take_clip, take_flow = clip_grid.wants(time), flow_grid.wants(time)
                if not (take_clip or take_flow):
                    continue
                if size is None:  # rotation and size are known from the first frame
                    turns = _quarter_turns(getattr(frame, "rotation", 0))
                    size = _conversion_size(frame.width, frame.height, clip_size, flow_width, turns)
                rgb = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24", width=size[0], height=size[1]), turns))
                if take_clip:
                    yield "clip", time - start, _clip_crop(rgb, clip_size)
                if take_flow:
                    last_flow = time - start
                    yield "flow", last_flow, _flow_grey(rgb, flow_width)
        except av.error.FFmpegError as error:
            where = f" after {last_flow + start:.1f} s" if last_flow is not None else ""
            raise VideoError(f"{path}: video is corrupt or truncated{where} ({_short(error)})") from None
    if last_flow is None:
        raise VideoError(f"{path}: no video frame could be decoded" + (f" after {start:.1f} s" if start else ""))


# ---------------------------------------------------------------------------------------------------- every frame


def video_fps(path: str | Path) -> float:
    """Average frame rate of the first video stream (what OpenCV's ``CAP_PROP_FPS`` reports)."""
    with _open_video(path) as container:
        rate = container.streams.video[0].average_rate
        if not rate:
            raise VideoError(f"{path}: video has no frame rate")
        return float(rate)


def native_width(path: str | Path) -> int:
    """Width in pixels of the first video stream."""
    with _open_video(path) as container:
        return container.streams.video[0].codec_context.width


def grey_frames(path: str | Path, max_seconds: float | None = None,
                width: int | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(time_seconds, grey uint8 [H, W])`` for every decoded frame, times relative to the first frame.

    For metrics that follow a reference implementation frame by frame (AV-Align). ``width`` scales frames down
    (aspect kept) while converting; ``None`` keeps the native size. Greyscale uses the same RGB weights as
    OpenCV's ``COLOR_BGR2GRAY`` on OpenCV-decoded frames, as the AV-Align reference does.
    """
    with _open_video(path) as container:
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
            raise VideoError(f"{path}: video is corrupt or truncated ({_short(error)})") from None


def _scaled_size(w: int, h: int, width: int | None) -> tuple[int, int]:
    if width is None or width >= w:
        return w, h
    return width, max(8, round(h * width / w / 2) * 2)


def _open_video(path: str | Path) -> av.container.InputContainer:
    """``_open`` that also requires a video stream."""
    container = _open(path)
    try:
        first_video_stream(container, path)
    except VideoError:
        container.close()
        raise
    return container
