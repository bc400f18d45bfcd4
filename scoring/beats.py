"""Beat coverage and beat hit scores, BCS and BHS.

Definitions (MuVi, Li et al. 2024, following the dance-to-music literature): detect beats in the generated and the
reference music (here ``librosa.beat.beat_track``), then

    BCS = (number of generated beats) / (number of reference beats)                 (near 1 is best)
    BHS = (reference beats matched one-to-one by a generated beat within 100 ms) / (number of reference beats)

The matching is one-to-one: each generated beat can hit at most one reference beat (greedy in time order,
nearest unused generated beat within the tolerance). Other papers bin onsets into 1 s bins instead; this module
uses beat times, not bins.
"""
from __future__ import annotations

import librosa
import numpy as np

BEAT_SAMPLE_RATE = 22_050


def beat_times(wav: np.ndarray, sample_rate: int = BEAT_SAMPLE_RATE) -> np.ndarray:
    """Mono ``[samples]`` -> beat times ``[B]`` in seconds (librosa's dynamic-programming beat tracker)."""
    _, beats = librosa.beat.beat_track(y=np.asarray(wav, np.float32), sr=sample_rate, units="time")
    return np.asarray(beats, dtype=np.float64)


def match_beats(generated: np.ndarray, reference: np.ndarray, tolerance: float = 0.1) -> int:
    """Number of reference beats matched one-to-one by generated beats within ``tolerance`` seconds."""
    used = np.zeros(len(generated), dtype=bool)
    hits = 0
    for ref in np.sort(reference):
        distance = np.where(used, np.inf, np.abs(np.asarray(generated) - ref))
        if distance.size and distance.min() <= tolerance:
            used[distance.argmin()] = True
            hits += 1
    return hits


def beat_scores(generated: np.ndarray, reference: np.ndarray, tolerance: float = 0.1) -> dict[str, float]:
    """BCS and BHS from beat times ``[Bg]`` and ``[Br]`` (seconds); NaN when the reference has no beat."""
    if len(reference) == 0:
        return {"bcs": float("nan"), "bhs": float("nan")}
    return {"bcs": len(generated) / len(reference),
            "bhs": match_beats(np.asarray(generated, float), np.asarray(reference, float), tolerance) / len(reference)}
