"""FAD from precomputed embeddings as a local ``evaluate`` module: ``evaluate.load("scoring/hub/fad")``.

A thin wrapper of ``scoring.fad.fad_from_clips``: embed the audio first with any embedder of ``scoring``
(VGGish, CLAP, codec, mel statistics). The repository root must be importable (run from it, or set
PYTHONPATH). Imports are one per line: evaluate's dependency scan misreads ``import a, b``.
"""
import datasets
import evaluate
import numpy as np

from scoring.fad import fad_from_clips
from scoring.metric_info import metric_info

_DESCRIPTION = """Fréchet distance between Gaussian fits of the generated and the reference embedding frames (all
frames of all clips pooled). The number depends on the embedder: always report which one produced it."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: one [T, D] embedding matrix per generated clip.
    references: one [T, D] embedding matrix per reference clip. evaluate stores predictions and references as
        rows of one table, so both lists must have the same length; for sets of different sizes call
        scoring.fad.fad_from_clips directly.
Returns:
    fad: the distance (lower is better, 0 for identical sets).
"""

_CITATION = """Kilgour et al., Fréchet Audio Distance: A Reference-Free Metric for Evaluating Music Enhancement
Algorithms, Interspeech 2019."""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FAD(evaluate.Metric):
    def _info(self):
        frames = datasets.Sequence(datasets.Sequence(datasets.Value("float32")))
        return metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION,
                           datasets.Features({"predictions": frames, "references": frames}))

    def _compute(self, predictions, references):
        generated = [np.asarray(clip, dtype=np.float64) for clip in predictions]  # each [T, D]
        reference = [np.asarray(clip, dtype=np.float64) for clip in references]
        return {"fad": fad_from_clips(generated, reference)}
