"""Where a frame becomes a feature: decode a video once and run both streams on the sampled frames."""
from __future__ import annotations

from pathlib import Path

from data.video import probe_video, sample_frames
from model.config import MotionConfig, SemanticConfig
from model.features import VideoFeatures
from model.motion import motion_features
from model.semantic import SemanticEncoder


def extract_features(path: str | Path, encoder: SemanticEncoder, semantic: SemanticConfig, motion: MotionConfig,
                     start: float = 0.0, max_seconds: float | None = None) -> VideoFeatures:
    """Video file -> ``VideoFeatures`` for ``[start, start + max_seconds)`` (raises ``data.video.VideoError``)."""
    info = probe_video(path)
    frames = sample_frames(path, semantic.clip_fps, encoder.image_size, motion.flow_fps, motion.width,
                           start=start, max_seconds=max_seconds)
    flow, flow_times = motion_features(frames.flow_frames, frames.flow_times, motion)
    semantic_tokens = encoder(frames.clip_frames)  # [Tc, Dc]
    duration = _covered_seconds(info.duration - start, frames.flow_times, motion.flow_fps, max_seconds)
    return VideoFeatures.from_arrays(semantic_tokens.cpu().numpy(), frames.clip_times, flow, flow_times, duration)


def _covered_seconds(remaining: float, frame_times, fps: float, max_seconds: float | None) -> float:
    """How much video the features stand for: the probed length when known, else up to the last frame."""
    last_frame = float(frame_times[-1]) + 1.0 / fps if len(frame_times) else 0.0
    seconds = remaining if remaining > 0 else last_frame
    seconds = max(seconds, min(last_frame, 1.0 / fps))
    return min(seconds, max_seconds) if max_seconds is not None else seconds
