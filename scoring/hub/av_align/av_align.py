"""AV-Align (Yariv et al. 2024) as a local ``evaluate`` module: ``evaluate.load("scoring/hub/av_align")``.

A thin wrapper of ``scoring.av_align.av_align``; the repository root must be importable (run from it, or set
PYTHONPATH). Imports are one per line: evaluate's dependency scan misreads ``import a, b``.
"""
import evaluate
import numpy as np

from scoring.audio import as_audio
from scoring.av_align import ONSET_SAMPLE_RATE
from scoring.av_align import av_align
from scoring.metric_info import audio_against
from scoring.metric_info import metric_info
from scoring.metric_info import VIDEO_PATH

_DESCRIPTION = """IoU of music onsets (librosa) and video motion peaks (local maxima above 0.1 of the per-frame mean
Farneback flow magnitude), an onset matching when a motion peak lies within one video frame. Needs no reference
music: predictions are the music, references the videos it was made for."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: music, as file paths or float arrays [samples].
    references: video file paths (mp4), same order.
    sample_rate: the arrays' sample rate (not needed for paths).
    flow_width: compute flow at this width (default: native size, as the reference implementation).
Returns:
    av_align: mean over clips (clips with no peak at all are left out); per_clip: the value of each pair.
"""

_CITATION = """Yariv et al., Diverse and Aligned Audio-to-Video Generation via Text-to-Video Model Adaptation, AAAI 2024."""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AVAlign(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, audio_against(reference_path=VIDEO_PATH))

    def _compute(self, predictions, references, sample_rate=None, flow_width=None):
        values = [av_align(video, as_audio(music, ONSET_SAMPLE_RATE, sample_rate), ONSET_SAMPLE_RATE, flow_width)
                  for music, video in zip(predictions, references)]
        return {"av_align": float(np.nanmean(values)) if np.isfinite(values).any() else float("nan"),
                "per_clip": values}
