"""tools/event_hits.py: music with hits on the events scores 1 at the events and 0 at the control times."""
from __future__ import annotations

import numpy as np

from tests.conftest import decaying_hits
from tools.event_hits import clip_scores, hit_share

SR = 22050


def test_hits_on_events_score_one_and_control_zero():
    events = np.array([1.0, 2.5, 4.0])
    on = clip_scores(decaying_hits(list(events), 6.0, SR), SR, events, beat=0.5, seconds=6.0, tolerance=0.1)
    assert on["event"] == 1.0 and on["control"] == 0.0
    off = clip_scores(decaying_hits(list(events + 0.25), 6.0, SR), SR, events, beat=0.5, seconds=6.0, tolerance=0.1)
    assert off["event"] == 0.0 and off["control"] == 1.0


def test_hit_share_edge_cases():
    assert np.isnan(hit_share(np.array([1.0]), np.array([]), 0.1))
    assert hit_share(np.array([]), np.array([1.0]), 0.1) == 0.0
    assert hit_share(np.array([1.05, 3.0]), np.array([1.0, 2.0]), 0.1) == 0.5


def test_paired_lift_is_taken_per_clip_against_ours():
    from tools.event_hits import paired_lift

    per_system = {"ours": {"a": {"event": 1.0, "control": 0.0}, "b": {"event": 0.5, "control": 0.5}},
                  "no_motion": {"a": {"event": 0.5, "control": 0.5}, "b": {"event": 0.5, "control": 0.5},
                                "c": {"event": 1.0, "control": 0.0}},  # c: not in ours, so not paired
                  "reference": {"a": {"event": 1.0, "control": 0.0}}}
    paired = paired_lift(per_system)
    assert set(paired) == {"no_motion"}
    assert paired["no_motion"]["n"] == 2 and paired["no_motion"]["mean"] == 0.5


def test_grid_hits_and_tempo_match_follow_the_beat_grid():
    beat, beats = 0.5, np.arange(0.5, 6.0, 0.5)
    events = np.array([1.0, 2.5, 4.0])
    grid = clip_scores(decaying_hits(list(beats), 6.0, SR), SR, events, beat, 6.0, 0.1, beats)
    assert grid["grid"] == 1.0 and grid["grid_control"] == 0.0 and grid["tempo_match"] == 1.0
    hits_only = clip_scores(decaying_hits(list(events), 6.0, SR), SR, events, beat, 6.0, 0.1, beats)
    assert hits_only["event"] == 1.0 and hits_only["grid"] == 0.0  # the events alone are not the grid
