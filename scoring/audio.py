"""What the metrics need on top of ``media.audio``: their error class, fixed-size windows, paths-or-arrays input."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.errors import UserError
from media.audio import read_audio, resample


class ScoringError(UserError):
    """Inputs (folders, metric names, options) that cannot be scored; one line for the user."""


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
        return read_audio(item, target_rate)[0]
    if sample_rate is None:
        raise ValueError("audio given as arrays needs sample_rate=")
    return resample(np.asarray(item, dtype=np.float32), sample_rate, target_rate)
