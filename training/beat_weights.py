"""The beat-weighted loss of DESIGN.md §3 (from VMAs): per code frame, weight 1 where a music onset meets a video
beat, ``alpha`` elsewhere.

Why: hits at cuts and impacts are a percent or two of all code frames, so under the plain cross-entropy the
gradient that would teach synchronisation is drowned by the frames any music model predicts without looking at the
video. Weighting puts it back. Both detectors are the well-kept ones: librosa's onset strength and peak picking for
the music, and the spatially averaged flow magnitude (plus the cut score, where flow is meaningless) of the motion
stream for the video.

Shapes: ``music_onsets`` -> bool [T], ``video_beats`` -> bool [T], ``frame_weights`` -> float [T] on the code
frame grid (``frame_rate`` Hz, frame t at t / frame_rate s); ``delayed_weights`` lays a batch [B, T] out like the
delayed labels, [B, K, S].
"""
from __future__ import annotations

import numpy as np
import torch

from model.features import VideoFeatures

MEAN_MAGNITUDE, CUT_SCORE = 0, -1  # first and last columns of the motion features (model/motion.py)
CUT_THRESHOLD = 0.5  # Bhattacharyya distance: near 1 at a hard cut, near 0 within a shot


def music_onsets(wav: np.ndarray, sample_rate: int, frame_rate: int, frames: int) -> torch.Tensor:
    """Mono float waveform [N] -> bool [frames]: code frames with a detected onset (librosa peak picking)."""
    import librosa

    hop = max(1, round(sample_rate / frame_rate))
    strength = librosa.onset.onset_strength(y=wav.astype(np.float32), sr=sample_rate, hop_length=hop)
    found = librosa.onset.onset_detect(onset_envelope=strength, sr=sample_rate, hop_length=hop, units="frames")
    onsets = torch.zeros(frames, dtype=torch.bool)
    found = found[found < frames]
    onsets[torch.as_tensor(found, dtype=torch.long)] = True
    return onsets


def video_beats(features: VideoFeatures, frame_rate: int, frames: int, delta_seconds: float) -> torch.Tensor:
    """bool [frames]: code frames nearest a video beat — a local maximum of the mean flow magnitude within
    +-``delta_seconds`` that stands above the clip's median, or a cut. Empty without motion tokens."""
    beats = torch.zeros(frames, dtype=torch.bool)
    if features.motion.shape[0] == 0:
        return beats
    magnitude, cut = features.motion[:, MEAN_MAGNITUDE].float(), features.motion[:, CUT_SCORE].float()
    times = features.motion_times.float()
    near = (times[:, None] - times[None, :]).abs() <= delta_seconds + 1e-3  # [Tf, Tf]; tolerant of float stamps
    local_max = magnitude >= magnitude[None, :].masked_fill(~near, float("-inf")).amax(dim=1)
    peaks = (local_max & (magnitude > magnitude.median())) | (cut > CUT_THRESHOLD)
    index = (times[peaks] * frame_rate).round().long()
    beats[index[(index >= 0) & (index < frames)]] = True
    return beats


def frame_weights(onsets: torch.Tensor, beats: torch.Tensor, delta_frames: int, alpha: float) -> torch.Tensor:
    """float [T]: 1 at music onsets with a video beat within +-``delta_frames``, ``alpha`` at every other frame."""
    kernel = torch.ones(1, 1, 2 * delta_frames + 1)
    near_beat = torch.nn.functional.conv1d(beats.float()[None, None], kernel, padding=delta_frames)[0, 0] > 0
    weights = torch.full(onsets.shape, float(alpha))
    weights[onsets & near_beat] = 1.0
    return weights


def delayed_weights(weights: torch.Tensor, num_codebooks: int, steps: int) -> torch.Tensor:
    """Frame weights [B, T] -> per-label weights [B, K, S] in the delay pattern (codebook k's label at step s is
    frame s - k; steps outside a codebook's frames get 1 and are ignored by the loss anyway)."""
    batch, frames = weights.shape
    out = torch.ones(batch, num_codebooks, steps, dtype=weights.dtype, device=weights.device)
    for k in range(num_codebooks):
        length = max(0, min(frames, steps - k))
        out[:, k, k:k + length] = weights[:, :length]
    return out
