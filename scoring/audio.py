"""Loading audio for the metrics: mono float32 at the rate each metric needs (resampled with librosa)."""
from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import soundfile as sf


class InputError(ValueError):
    """An input file or folder that cannot be scored; the message is one line meant for the user."""


def load_audio(path: str | Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read ``path`` as mono float32 ``[samples]``, resampled to ``sample_rate`` when given.

    Returns ``(wav, sample_rate)``. Raises ``InputError`` for missing, empty or unreadable files.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such audio file")
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise InputError(f"{path}: not a readable audio file ({str(error).splitlines()[0][:160]})") from None
    if wav.shape[0] == 0:
        raise InputError(f"{path}: audio file has no samples")
    return resample(wav.mean(axis=1), sr, sample_rate or sr), sample_rate or sr


def resample(wav: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """``[samples]`` at ``sr`` -> ``[samples * target_sr / sr]`` float32 (librosa's default soxr resampler)."""
    if sr == target_sr:
        return np.ascontiguousarray(wav, dtype=np.float32)
    return librosa.resample(np.asarray(wav, dtype=np.float32), orig_sr=sr, target_sr=target_sr).astype(np.float32)


def split_windows(wav: np.ndarray, size: int, min_size: int = 1) -> list[np.ndarray]:
    """``[samples]`` -> non-overlapping windows of ``size`` samples; a last window shorter than ``min_size`` is
    dropped (audiocraft drops too-short PaSST segments the same way rather than padding them)."""
    pieces = [wav[start:start + size] for start in range(0, len(wav), size)]
    kept = [p for p in pieces if len(p) >= min_size]
    return kept or [wav]


def as_audio(item: str | Path | np.ndarray | list, target_rate: int, sample_rate: int | None = None) -> np.ndarray:
    """A file path or an array ``[samples]`` (at ``sample_rate``) -> mono float32 at ``target_rate``.

    Lets the ``evaluate`` wrappers accept either paths or decoded audio.
    """
    if isinstance(item, (str, Path)):
        return load_audio(item, target_rate)[0]
    if sample_rate is None:
        raise ValueError("audio given as arrays needs sample_rate=")
    return resample(np.asarray(item, dtype=np.float32), sample_rate, target_rate)
