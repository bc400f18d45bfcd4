"""Where a frame becomes a feature: decode a video once and run both streams on the sampled frames.

Decoding (and the flow of the motion stream) runs in a background thread while CLIP embeds the frames decoded so
far, in batches on the encoder's device: the two costs overlap instead of adding up.

    video --iter_samples--> clip frames uint8 [Tc, S, S, 3] --SemanticEncoder--> tokens [Tc, Dc]
                        \\-> grey frames uint8 [Tf + 1, h, w] --motion_features--> [Tf, Dm]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from common.prefetch import ahead
from media.video import iter_samples, probe_video
from model.config import MotionConfig, SemanticConfig
from model.features import VideoFeatures
from model.motion import motion_features
from model.semantic import SemanticEncoder

DECODE_AHEAD = 64  # samples decoded in advance of the consumer (bounded: memory stays small)


def extract_features(path: str | Path, encoder: SemanticEncoder, semantic: SemanticConfig, motion: MotionConfig,
                     start: float = 0.0, max_seconds: float | None = None) -> VideoFeatures:
    """Video file -> ``VideoFeatures`` for ``[start, start + max_seconds)`` (raises ``media.video.VideoError``)."""
    info = probe_video(path)
    samples = iter_samples(path, semantic.clip_fps, encoder.image_size, motion.flow_fps, motion.width,
                           start=start, max_seconds=max_seconds)
    tokens, clip_times, pending, flow_frames, flow_times = [], [], [], [], []
    for kind, time, image in ahead(samples, DECODE_AHEAD):
        if kind == "clip":
            pending.append(image), clip_times.append(time)
            if len(pending) == encoder.batch_size:
                tokens.append(encoder(np.stack(pending))), pending.clear()
        else:
            flow_frames.append(image), flow_times.append(time)
    if pending:
        tokens.append(encoder(np.stack(pending)))
    flow, flow_seconds = motion_features(np.stack(flow_frames), np.asarray(flow_times, np.float32), motion)
    semantic_tokens = torch.cat(tokens)  # [Tc, Dc] on the encoder's device
    duration = _covered_seconds(info.duration - start, np.asarray(flow_times), motion.flow_fps, max_seconds)
    return VideoFeatures.from_arrays(semantic_tokens.float().cpu().numpy(), np.asarray(clip_times, np.float32),
                                     flow, flow_seconds, duration)


def _covered_seconds(remaining: float, frame_times, fps: float, max_seconds: float | None) -> float:
    """How much video the features stand for: the probed length when known, else up to the last frame."""
    last_frame = float(frame_times[-1]) + 1.0 / fps if len(frame_times) else 0.0
    seconds = remaining if remaining > 0 else last_frame
    seconds = max(seconds, min(last_frame, 1.0 / fps))
    return min(seconds, max_seconds) if max_seconds is not None else seconds
