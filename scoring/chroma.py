"""Chroma cosine similarity between generated and reference music.

Definition (audiocraft ``metrics/chroma_cosinesim.py``, the codebase VidMuse builds on): compute a 12-bin
chromagram of each signal (here ``librosa.feature.chroma_stft`` at 32 kHz with audiocraft's default window,
n_fft = 4096, hop = 1024, each frame scaled to max 1), take the cosine similarity of the two chroma vectors at
every frame, and average over frames (over the shorter signal's length). 1 means the same pitch-class content
at every moment; a frame silent in either signal counts as 0, as in audiocraft. ``argmax=True`` reproduces audiocraft's ``argmax`` option (each frame one-hot on its strongest
pitch class), a much stricter score that is near 1/12 by chance; which variant the V2M papers used is not
stated, so reports name the variant.
"""
from __future__ import annotations

import librosa
import numpy as np

from media.audio import rms_dbfs

CHROMA_SAMPLE_RATE = 32_000
N_FFT, HOP = 4096, 1024
SILENT_DBFS = -60.0  # quieter than this, a chromagram is noise normalised to 1: no pitch content to compare


def chroma_undefined(generated: np.ndarray, reference: np.ndarray,
                     sample_rate: int = CHROMA_SAMPLE_RATE) -> str | None:
    """Why chroma cosine has no value for this pair (None when it has one): a silent signal has no pitch classes
    (audiocraft would score it 0.0 against anything, itself included), a clip shorter than one window none at all."""
    for name, wav in (("generated music", generated), ("reference", reference)):
        if len(wav) < N_FFT:
            return f"{name} is shorter than one chroma window ({N_FFT / sample_rate:.2f} s)"
        if rms_dbfs(np.asarray(wav, np.float32)) < SILENT_DBFS:
            return f"{name} is silent (below {SILENT_DBFS:g} dBFS RMS)"
    return None


def chromagram(wav: np.ndarray, sample_rate: int = CHROMA_SAMPLE_RATE, argmax: bool = False) -> np.ndarray:
    """Mono ``[samples]`` -> chroma ``[frames, 12]`` (per-frame max-normalised, or one-hot with ``argmax``)."""
    chroma = librosa.feature.chroma_stft(y=np.asarray(wav, np.float32), sr=sample_rate, n_fft=N_FFT,
                                         hop_length=HOP, n_chroma=12).T
    if argmax:
        chroma = np.eye(12, dtype=chroma.dtype)[chroma.argmax(axis=1)]
    return chroma


def chroma_cosine(generated: np.ndarray, reference: np.ndarray, sample_rate: int = CHROMA_SAMPLE_RATE,
                  argmax: bool = False, eps: float = 1e-8) -> float:
    """Mean over frames of the cosine similarity of the two chromagrams; ``[samples]`` each -> [0, 1], or NaN when
    ``chroma_undefined`` gives a reason."""
    if chroma_undefined(generated, reference, sample_rate):
        return float("nan")
    gen, ref = chromagram(generated, sample_rate, argmax), chromagram(reference, sample_rate, argmax)
    frames = min(len(gen), len(ref))
    gen, ref = gen[:frames], ref[:frames]
    dots = np.sum(gen * ref, axis=1)
    norms = np.maximum(np.linalg.norm(gen, axis=1) * np.linalg.norm(ref, axis=1), eps)
    return float(np.mean(dots / norms))
