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


def _interval(mean: float) -> dict:
    return {"mean": mean, "ci_low": mean - 0.05, "ci_high": mean + 0.05, "n": 10}


def test_plot_eval_reads_both_reports_and_writes_an_image(tmp_path):
    import json

    import pytest

    from common.errors import UserError
    from tools.plot_eval import collect, plot

    (tmp_path / "report").mkdir()
    report = {"systems": {name: {"aggregate": {"bhs": _interval(v)}} for name, v in
                          (("unconditional", 0.3), ("ours", 0.5), ("no_motion", 0.35))},
              "paired_differences": {"base": "ours", "versus": {"no_motion": {"bhs": _interval(0.15)}}}}
    (tmp_path / "report" / "report.json").write_text(json.dumps(report))
    with pytest.raises(UserError):  # no event_hits.json is fine, but an unreadable one is a clear error
        (tmp_path / "event_hits.json").write_text("{not json")
        collect(tmp_path)
    hits = {"systems": {"ours": {"lift": _interval(0.25)}, "reference": {"lift": _interval(1.0)}},
            "paired_lift": {"no_motion": _interval(0.2)}}
    (tmp_path / "event_hits.json").write_text(json.dumps(hits))
    panels = collect(tmp_path)
    assert panels["bhs"]["systems"]["ours"]["mean"] == 0.5 and set(panels["bhs"]["paired"]) == {"no_motion"}
    assert set(panels["lift"]["systems"]) == {"ours"}  # the reference (1 by construction) is left out
    plot(panels, tmp_path / "plots" / "alignment.png", "test")
    assert (tmp_path / "plots" / "alignment.png").read_bytes()[:4] == b"\x89PNG"
    assert not list((tmp_path / "plots").glob(".*"))  # the temporary file was renamed
