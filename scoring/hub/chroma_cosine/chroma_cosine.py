"""Chroma cosine similarity as a local ``evaluate`` module: ``evaluate.load("scoring/hub/chroma_cosine")``.

A thin wrapper of ``scoring.chroma.chroma_cosine``; the repository root must be importable (run from it, or set
PYTHONPATH). Imports are one per line: evaluate's dependency scan misreads ``import a, b``.
"""
import evaluate
import numpy as np

from scoring.audio import as_audio
from scoring.chroma import CHROMA_SAMPLE_RATE
from scoring.chroma import chroma_cosine
from scoring.metric_info import audio_against
from scoring.metric_info import metric_info

_DESCRIPTION = """Frame-wise cosine similarity of 12-bin chromagrams of generated and reference music, averaged over
frames (audiocraft's ChromaCosineSimilarityMetric); 1 = same pitch classes at every moment."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: generated audio, as file paths or float arrays [samples].
    references: reference audio, same form and order.
    sample_rate: the arrays' sample rate (not needed for paths).
    argmax: one-hot chroma frames (audiocraft's stricter variant).
Returns:
    chroma_cosine: mean over clips; per_clip: the value of each pair.
"""

_CITATION = """Copet et al., Simple and Controllable Music Generation (MusicGen), NeurIPS 2023 (audiocraft metrics)."""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ChromaCosine(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, audio_against())

    def _compute(self, predictions, references, sample_rate=None, argmax=False):
        values = [chroma_cosine(as_audio(p, CHROMA_SAMPLE_RATE, sample_rate),
                                as_audio(r, CHROMA_SAMPLE_RATE, sample_rate), argmax=argmax)
                  for p, r in zip(predictions, references)]
        defined = [v for v in values if np.isfinite(v)]  # NaN: silent or too short, left out of the mean
        return {"chroma_cosine": float(np.mean(defined)) if defined else float("nan"), "per_clip": values}
