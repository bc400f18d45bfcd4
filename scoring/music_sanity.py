"""Does generated music sound like music at all? Reference-free checks for music made for real footage.

Per clip (mono float32 at any rate; numbers, or NaN with the reason in ``undefined``):

- ``chroma_peak_mean``: tonality. ``librosa.feature.chroma_stft`` (n_fft 4096, hop 1024, as ``scoring.chroma``);
  for each frame that is not silent, the strongest pitch class over the mean of the 12; averaged over those frames.
  A chord gives about 3-4 (three strong classes of twelve), white noise about 1.3-1.6, a drone over noise in between.
- ``flatness``: noisiness. ``librosa.feature.spectral_flatness`` (n_fft 2048, hop 512), mean over frames that are not
  silent; 1 is white noise, tonal music is near 0.01.
- ``onsets_per_s`` and ``longest_gap_s``: ``librosa.onset.onset_detect`` (the detector ``tools/event_hits.py`` uses);
  the longest stretch without an onset, counting from the start and to the end. ``onset_every_5s`` is
  ``longest_gap_s <= 5``: every 5-second window (sliding, not only 0-5, 5-10, ...) holds an onset.

A silent clip (RMS below ``SILENT_DBFS``) has no pitch, no spectral shape and no onsets worth the name: every figure
is NaN and ``undefined`` says "silent", so a mute model can never pass by scoring 0 flatness.
"""
from __future__ import annotations

import math

import numpy as np

from media.audio import rms_dbfs

SILENT_DBFS = -60.0
CHROMA_FFT, CHROMA_HOP = 4096, 1024
FLAT_FFT, FLAT_HOP = 2048, 512
ONSET_WINDOW = 5.0  # seconds
FIGURES = ("chroma_peak_mean", "flatness", "onsets_per_s", "longest_gap_s", "onset_every_5s")


def _loud_frames(wav: np.ndarray, frame_length: int, hop: int) -> np.ndarray:
    """Boolean [frames]: frame RMS above ``SILENT_DBFS`` (frames centred as librosa's features are)."""
    import librosa

    rms = librosa.feature.rms(y=wav, frame_length=frame_length, hop_length=hop)[0]
    return 20 * np.log10(np.maximum(rms, 1e-10)) > SILENT_DBFS


def chroma_peak_mean(wav: np.ndarray, sample_rate: int) -> float:
    import librosa

    chroma = librosa.feature.chroma_stft(y=wav, sr=sample_rate, n_fft=CHROMA_FFT, hop_length=CHROMA_HOP)  # [12, F]
    loud = _loud_frames(wav, CHROMA_FFT, CHROMA_HOP)[: chroma.shape[1]]
    chroma = chroma[:, loud]
    if chroma.shape[1] == 0:
        return float("nan")
    ratio = chroma.max(axis=0) / np.maximum(chroma.mean(axis=0), 1e-10)
    return float(ratio.mean())


def flatness(wav: np.ndarray) -> float:
    import librosa

    flat = librosa.feature.spectral_flatness(y=wav, n_fft=FLAT_FFT, hop_length=FLAT_HOP)[0]
    loud = _loud_frames(wav, FLAT_FFT, FLAT_HOP)[: len(flat)]
    return float(flat[loud].mean()) if loud.any() else float("nan")


def onset_times(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    import librosa

    return librosa.onset.onset_detect(y=wav, sr=sample_rate, units="time")


def longest_gap(onsets: np.ndarray, seconds: float) -> float:
    """Longest onset-free stretch of [0, seconds], the edges counted."""
    edges = np.concatenate([[0.0], np.sort(np.asarray(onsets, float)), [seconds]])
    return float(np.diff(edges).max())


def clip_figures(wav: np.ndarray, sample_rate: int) -> dict:
    """``{figure: value}`` for ``FIGURES`` plus ``seconds`` and ``undefined`` (None, or why every figure is NaN)."""
    wav = np.ascontiguousarray(wav, np.float32)
    seconds = len(wav) / sample_rate
    nan = {name: float("nan") for name in FIGURES}
    if len(wav) < CHROMA_FFT:
        return {**nan, "seconds": seconds, "undefined": f"shorter than one analysis window ({CHROMA_FFT} samples)"}
    if rms_dbfs(wav) < SILENT_DBFS:
        return {**nan, "seconds": seconds, "undefined": f"silent (below {SILENT_DBFS:g} dBFS RMS)"}
    onsets = onset_times(wav, sample_rate)
    gap = longest_gap(onsets, seconds)
    return {"chroma_peak_mean": chroma_peak_mean(wav, sample_rate), "flatness": flatness(wav),
            "onsets_per_s": len(onsets) / seconds, "longest_gap_s": gap,
            "onset_every_5s": float(gap <= ONSET_WINDOW), "seconds": seconds, "undefined": None}


def figure_range(per_clip: list[dict], name: str) -> dict:
    """min, 5th percentile, median, 95th percentile, max of a figure over the clips where it is defined."""
    values = np.array([c[name] for c in per_clip if not math.isnan(c[name])], float)
    if len(values) == 0:
        return {"n": 0, "min": math.nan, "p5": math.nan, "median": math.nan, "p95": math.nan, "max": math.nan}
    p5, median, p95 = np.percentile(values, [5, 50, 95])
    return {"n": int(len(values)), "min": float(values.min()), "p5": float(p5), "median": float(median),
            "p95": float(p95), "max": float(values.max())}
