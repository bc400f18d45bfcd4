"""Beat coverage / beat hit scores (BCS / BHS) as a local ``evaluate`` module:
``evaluate.load("scoring/hub/beat_scores")``.

A thin wrapper of ``scoring.beats``; the repository root must be importable (run from it, or set PYTHONPATH).
Imports are one per line: evaluate's dependency scan misreads ``import a, b``.
"""
import evaluate
import numpy as np

from scoring.audio import as_audio
from scoring.beats import BEAT_SAMPLE_RATE
from scoring.beats import beat_scores
from scoring.beats import beat_times
from scoring.metric_info import audio_against
from scoring.metric_info import metric_info

_DESCRIPTION = """MuVi's beat metrics from librosa beat tracking: BCS = generated beats / reference beats;
BHS = reference beats matched one-to-one by a generated beat within `tolerance` seconds / reference beats."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: generated audio, as file paths or float arrays [samples].
    references: reference audio, same form and order.
    sample_rate: the arrays' sample rate (not needed for paths).
    tolerance: hit window in seconds (default 0.1).
Returns:
    bcs, bhs: means over clips (clips whose reference has no beat are left out); per_clip: a dict per pair.
"""

_CITATION = """Li et al., MuVi: Video-to-Music Generation with Semantic Alignment and Rhythmic Synchronization, 2024."""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class BeatScores(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, audio_against())

    def _compute(self, predictions, references, sample_rate=None, tolerance=0.1):
        per_clip = [beat_scores(beat_times(as_audio(p, BEAT_SAMPLE_RATE, sample_rate)),
                                beat_times(as_audio(r, BEAT_SAMPLE_RATE, sample_rate)), tolerance)
                    for p, r in zip(predictions, references)]
        return {"bcs": float(np.nanmean([c["bcs"] for c in per_clip])),
                "bhs": float(np.nanmean([c["bhs"] for c in per_clip])), "per_clip": per_clip}
