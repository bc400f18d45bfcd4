"""The held-out event generator: its clips show the events it states, are the same for the same seed, look and
move unlike the training generator's, and its dataset is what eval.py and tools/event_hits.py read."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from data.heldout_events import (CRF_CHOICES, FPS_CHOICES, SIZES, bent_beat_grid, clip_row, generate, render_frames,
                                 sample_heldout_spec)
from data.synthetic import render_frames as training_frames
from data.synthetic import sample_clip_spec


def frames_of(spec) -> list[np.ndarray]:
    return list(render_frames(spec))


def first_spec_with(kind: str, seed: int = 5, seconds: float = 4.0):
    for index in range(50):
        spec = sample_heldout_spec(seed, index, seconds)
        if spec.event_times(kind):
            return spec
    raise AssertionError(f"no {kind} in 50 clips")


def test_same_seed_same_clip_other_seed_other_clip():
    a, b = sample_heldout_spec(3, 7), sample_heldout_spec(3, 7)
    assert a == b
    assert sample_heldout_spec(4, 7) != a and sample_heldout_spec(3, 8) != a
    spec = sample_heldout_spec(3, 7, seconds=2.0)
    first, second = frames_of(spec), frames_of(spec)
    assert all(np.array_equal(x, y) for x, y in zip(first, second))


def test_events_are_irregular_and_on_the_bent_beat_grid():
    for index in range(300):
        spec = sample_heldout_spec(1, index, 8.0)
        events, beats, beat = np.array(spec.event_times()), np.array(spec.beat_times), 60.0 / spec.bpm
        assert len(events) >= 1 and events.min() >= 0.8 and events.max() <= 8.0 - 0.6
        assert np.abs(beats[:, None] - events[None, :]).min(axis=0).max() < 1e-5  # every event is a beat
        local = np.diff(beats)
        assert local.min() >= 0.7 * beat - 1e-6  # the grid bends but stays near the nominal tempo
        # tools/event_hits.py's control times (event + half a nominal beat) fall between beats and events
        control = events + beat / 2
        assert np.abs(control[:, None] - beats[None, :]).min() > 0.1
    gaps = np.concatenate([np.diff(sample_heldout_spec(1, i, 8.0).event_times()) for i in range(100)])
    assert gaps.std() > 0.4  # irregular: not a fixed period


def test_bent_grid_puts_each_event_on_a_beat():
    grid = bent_beat_grid([1.3, 2.9, 5.05], bpm=100.0, seconds=8.0)
    for event in (1.3, 2.9, 5.05):
        assert min(abs(g - event) for g in grid) < 1e-6
    assert grid[0] == 0.0 and grid[-1] < 8.0


@pytest.mark.parametrize("kind", ["cut", "flash"])
def test_frame_difference_peaks_at_cuts_and_flashes(kind):
    spec = first_spec_with(kind)
    frames = frames_of(spec)
    diff = np.array([np.abs(frames[k].astype(np.int16) - frames[k - 1]).mean() for k in range(1, len(frames))])
    for time in spec.event_times(kind):
        shown = round(time * spec.fps)  # the event's nearest frame; diff[k - 1] is frame k against k - 1
        assert diff[shown - 1] > 4 * np.median(diff), (time, diff[shown - 1], np.median(diff))


def test_the_pan_turns_back_at_a_reversal():
    spec = first_spec_with("reversal")
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) for f in frames_of(spec)]
    shift = np.array([cv2.phaseCorrelate(gray[k - 1], gray[k])[0] for k in range(1, len(gray))])
    for time in spec.event_times("reversal"):
        k = round(time * spec.fps)
        before, after = shift[max(0, k - 7) : k - 1].mean(axis=0), shift[k : k + 6].mean(axis=0)
        assert float(before @ after) < 0, (time, before, after)


def test_it_does_not_look_or_move_like_the_training_set():
    held = frames_of(sample_heldout_spec(2, 0, seconds=1.0))
    train = list(training_frames(sample_clip_spec(0, 0, 1.0)))

    def flat_share(frame):  # pixels whose 3x3 neighbourhood is one colour: flat-shaded graphics
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        return float((cv2.dilate(gray, np.ones((3, 3))) == cv2.erode(gray, np.ones((3, 3)))).mean())

    def still_share(frames):  # pixels that barely change from one frame to the next: a still background
        return float(np.mean([(np.abs(b.astype(np.int16) - a) < 3).all(axis=2).mean() for a, b in zip(frames, frames[1:])]))

    assert flat_share(train[0]) > 0.5 and flat_share(held[0]) < 0.1
    assert still_share(train) > 0.5 and still_share(held) < 0.2  # the whole held-out frame moves
    spec = sample_heldout_spec(2, 0)
    assert (spec.width, spec.height) in SIZES and spec.fps in FPS_CHOICES and spec.crf in CRF_CHOICES
    assert (spec.width, spec.height) != (228, 128) and spec.fps != 24


def test_dataset_has_the_schema_columns_and_only_a_test_split(tmp_path):
    from datasets import load_from_disk

    from data.schema import SPLITS, check_schema, clip_features

    generate(tmp_path / "held", n=2, seed=9, seconds=2.5, renderer="additive", progress=False)
    dataset = load_from_disk(str(tmp_path / "held"))
    assert set(dataset) == set(SPLITS) and len(dataset["train"]) == len(dataset["validation"]) == 0
    assert dataset["test"].features == clip_features() and len(dataset["test"]) == 2
    row = dataset["test"][0]
    spec = sample_heldout_spec(9, 0, 2.5)
    assert row == {**clip_row(spec), "event_times": row["event_times"]} and row["event_times"] == spec.event_times()
    assert row["id"].startswith("held") and "do-not-train" in row["tags"]
    assert (tmp_path / "held" / row["video_path"]).is_file() and (tmp_path / "held" / row["music_path"]).is_file()
    assert check_schema(tmp_path / "held")["do_not_train"] is True


def test_training_refuses_the_held_out_set(tmp_path):
    from training.batches import DatasetError, load_split

    generate(tmp_path / "held", n=1, seed=9, seconds=2.5, renderer="additive", progress=False)
    with pytest.raises(DatasetError, match="never for training"):
        load_split(tmp_path / "held", "test")
