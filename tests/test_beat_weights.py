"""The beat-weighted loss: detectors on known signals, weights where onsets meet video beats, the delayed layout."""
from __future__ import annotations

import torch

from model.delay import training_pair
from model.features import VideoFeatures
from training.loss import codebook_cross_entropy
from tests.conftest import decaying_hits
from training.beat_weights import delayed_weights, frame_weights, music_onsets, video_beats

RATE, SR = 50, 32000


def test_music_onsets_land_on_the_clicks():
    onsets = music_onsets(decaying_hits([0.5, 1.7, 3.1], 4.0, SR), SR, RATE, 200)
    found = onsets.nonzero().flatten()
    for t in (0.5, 1.7, 3.1):
        assert (found - t * RATE).abs().min() <= 2
    assert len(found) <= 6  # not every frame of the noise floor


def _motion(spike_times: list[float], cut_times: list[float] = (), seconds: float = 4.0) -> VideoFeatures:
    times = torch.arange(1, int(seconds * 10)) / 10.0
    motion = torch.zeros(len(times), 30)
    motion[:, 0] = 0.01 + 0.001 * torch.sin(times)  # slow drift: no beat
    for t in spike_times:
        motion[(times - t).abs().argmin(), 0] = 0.2
    for t in cut_times:
        motion[(times - t).abs().argmin(), -1] = 0.9
    return VideoFeatures(torch.zeros(8, 4), torch.arange(8) / 2.0, motion, times, seconds)


def test_video_beats_are_flow_peaks_and_cuts():
    beats = video_beats(_motion([1.0, 2.5], cut_times=[3.3]), RATE, 200, delta_seconds=0.1)
    found = set(beats.nonzero().flatten().tolist())
    assert {50, 125, 165} <= found and len(found) <= 5  # the drift's one maximum may also count, nothing more
    assert not video_beats(_motion([1.0]).without_motion(), RATE, 200, 0.1).any()


def test_weights_are_one_only_where_an_onset_meets_a_beat():
    onsets = torch.zeros(100, dtype=torch.bool)
    onsets[[10, 40, 80]] = True
    beats = torch.zeros(100, dtype=torch.bool)
    beats[[12, 60]] = True  # near the first onset only
    weights = frame_weights(onsets, beats, delta_frames=5, alpha=0.05)
    assert weights[10] == 1 and weights[40] == weights[80] == weights[12] == torch.tensor(0.05)
    assert (weights == 1).sum() == 1


def test_delayed_weights_follow_the_labels_of_the_delay_pattern():
    frames, k = 6, 4
    codes = torch.arange(frames).repeat(1, k, 1)  # frame index as the code
    _, labels = training_pair(codes, 99, 99)
    weights = delayed_weights(torch.arange(frames, dtype=torch.float32)[None] + 10, k, labels.shape[-1])
    real = labels >= 0
    assert torch.equal(weights[real], labels[real].float() + 10)  # each label weighted by its own frame's weight
    logits = torch.randn(1, k, labels.shape[-1], 8)
    labels = labels.clamp_max(7).masked_fill(~real, -100)
    ones = delayed_weights(torch.ones(1, frames), k, labels.shape[-1])
    assert torch.allclose(codebook_cross_entropy(logits, labels, ones), codebook_cross_entropy(logits, labels))
