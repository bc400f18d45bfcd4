"""tools/event_hits.py: music with hits on the events scores 1 at the events and 0 at the control times."""
from __future__ import annotations

import numpy as np

from tools.event_hits import clip_scores, hit_share

SR = 22050


def _hits(times: list[float], seconds: float = 6.0) -> np.ndarray:
    wav = 0.001 * np.random.default_rng(1).standard_normal(int(seconds * SR)).astype(np.float32)
    for t in times:
        start = int(t * SR)
        wav[start:start + 2000] += np.exp(-np.arange(2000) / 300.0) * np.sin(np.arange(2000) * 0.2)
    return wav


def test_hits_on_events_score_one_and_control_zero():
    events = np.array([1.0, 2.5, 4.0])
    on = clip_scores(_hits(list(events)), SR, events, beat=0.5, seconds=6.0, tolerance=0.1)
    assert on["event"] == 1.0 and on["control"] == 0.0
    off = clip_scores(_hits(list(events + 0.25)), SR, events, beat=0.5, seconds=6.0, tolerance=0.1)
    assert off["event"] == 0.0 and off["control"] == 1.0


def test_hit_share_edge_cases():
    assert np.isnan(hit_share(np.array([1.0]), np.array([]), 0.1))
    assert hit_share(np.array([]), np.array([1.0]), 0.1) == 0.0
    assert hit_share(np.array([1.05, 3.0]), np.array([1.0, 2.0]), 0.1) == 0.5
