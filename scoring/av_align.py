"""AV-Align: how well music onsets coincide with motion peaks of the video.

Definition (Yariv et al., "Diverse and Aligned Audio-to-Video Generation via Text-to-Video Model Adaptation",
AAAI 2024; reference code ``av_align.py`` in guyyariv/TempoTokens, later versions with the 0.1 threshold):

- video: dense Farneback optical flow (OpenCV, parameters 0.5, 3, 15, 3, 5, 1.2, 0) between consecutive greyscale
  frames; per frame the mean flow magnitude, in pixels at the video's native resolution (the reference does not
  normalise); the first frame repeats the first pair's value. Video peaks are strict local maxima above 0.1.
- audio: ``librosa.onset.onset_detect`` on the onset-strength envelope at librosa's default 22,050 Hz.
- score: an audio peak matches when some video peak lies strictly within +-1 frame (1 / fps); IoU =
  matches / (audio peaks + video peaks - matches). As in the reference, matching is per audio peak (two audio
  peaks may match the same video peak). Undefined (NaN) when neither signal has a peak.

Only the video's first ``len(audio)`` seconds are used. ``flow_width`` (not in the reference) computes flow on
frames scaled to that width and rescales magnitudes to native pixels, trading exactness for speed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import librosa
import numpy as np

from media.video import grey_frames, native_width, video_fps

ONSET_SAMPLE_RATE = 22_050
PEAK_THRESHOLD = 0.1


@dataclass
class MotionPeaks:
    """Per-frame motion of one video: ``times`` / ``magnitude`` ``[F]``, ``peaks`` ``[P]`` seconds, ``fps``."""

    times: np.ndarray
    magnitude: np.ndarray
    peaks: np.ndarray
    fps: float


def flow_magnitude(prev: np.ndarray, curr: np.ndarray) -> float:
    """Mean Farneback flow magnitude between two greyscale ``[H, W]`` frames (pixels per frame)."""
    flow = cv2.calcOpticalFlowFarneback(prev, curr, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    return float(cv2.magnitude(flow[..., 0], flow[..., 1]).mean())


def local_maxima(values: np.ndarray, threshold: float = PEAK_THRESHOLD) -> np.ndarray:
    """Indices ``i`` with ``v[i-1] < v[i] > v[i+1]`` and ``v[i] > threshold`` (ends excluded)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 3:
        return np.zeros(0, dtype=int)
    inner = (v[1:-1] > v[:-2]) & (v[1:-1] > v[2:]) & (v[1:-1] > threshold)
    return np.nonzero(inner)[0] + 1


def video_motion_peaks(path: str | Path, max_seconds: float | None = None,
                       flow_width: int | None = None) -> MotionPeaks:
    """Decode ``path`` once and return its per-frame motion trajectory and motion peaks."""
    width = native_width(path)
    scale = width / flow_width if flow_width and flow_width < width else 1.0  # back to native pixels
    times, magnitude, prev = [], [], None
    for time, grey in grey_frames(path, max_seconds, flow_width):
        if prev is not None:
            magnitude.append(flow_magnitude(prev, grey) * scale)
        times.append(time)
        prev = grey
    magnitude = magnitude[:1] + magnitude  # frame 0 repeats the first pair, as the reference does
    times, magnitude = np.asarray(times), np.asarray(magnitude)
    return MotionPeaks(times, magnitude, times[local_maxima(magnitude)] if len(magnitude) else times[:0],
                       video_fps(path))


def audio_onsets(wav: np.ndarray, sample_rate: int = ONSET_SAMPLE_RATE) -> np.ndarray:
    """Mono ``[samples]`` -> onset times ``[O]`` in seconds (librosa's default onset detector)."""
    envelope = librosa.onset.onset_strength(y=np.asarray(wav, np.float32), sr=sample_rate)
    return librosa.onset.onset_detect(onset_envelope=envelope, sr=sample_rate, units="time")


def av_align_iou(audio_peaks: np.ndarray, video_peaks: np.ndarray, fps: float) -> float:
    """IoU of audio and video peak times (seconds): matches within +-1/fps over the union of both sets."""
    audio_peaks, video_peaks = np.asarray(audio_peaks, float), np.asarray(video_peaks, float)
    if len(audio_peaks) + len(video_peaks) == 0:
        return float("nan")
    if len(video_peaks) == 0:
        return 0.0
    gaps = np.abs(audio_peaks[:, None] - video_peaks[None, :])  # [A, V]
    matches = int(np.sum(np.any(gaps < 1.0 / fps, axis=1)))
    return matches / (len(audio_peaks) + len(video_peaks) - matches)


def av_align(video_path: str | Path, wav: np.ndarray, sample_rate: int = ONSET_SAMPLE_RATE,
             flow_width: int | None = None) -> float:
    """AV-Align of music ``[samples]`` (at ``sample_rate``, ideally 22,050 Hz) against the video at ``video_path``."""
    motion = video_motion_peaks(video_path, max_seconds=len(wav) / sample_rate, flow_width=flow_width)
    return av_align_iou(audio_onsets(wav, sample_rate), motion.peaks, motion.fps)
