"""The real-music set (data.real_music) and joining sets (data.join).

Real music: windows of recordings become clips whose events sit on the music's strongest beats, found by librosa;
a silent track gives no clip; no audio is a one-line error. Join: rows keep their splits, media and cached features
are hard-linked (same bytes), a held-out set and a duplicate id are refused.

Offline and small: two 9 s "recordings" written here (a click track at 120 BPM with every fourth beat accented over
an A minor chord, and silence) and four generated pictures.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from datasets import load_from_disk

from data import join as join_sets
from data import real_music as rm
from data.synthetic import generate as synthetic_generate
from tests.test_photo_world import all_rows, write_pictures

RATE = 32_000
BPM = 120.0
ACCENT_EVERY = 4  # beats 0, 4, 8, ... are loud


def recording(seconds: float = 9.0) -> np.ndarray:
    """A click on every beat (every fourth one 4x louder) over a quiet A minor chord: mono float32 [N]."""
    t = np.arange(int(seconds * RATE)) / RATE
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 261.63, 329.63)) * 0.05
    wav = chord.astype(np.float32)
    click = (np.sin(2 * np.pi * 1500 * t[:800]) * np.exp(-t[:800] * 200)).astype(np.float32)
    for k, start in enumerate(np.arange(0.25, seconds - 0.1, 60.0 / BPM)):
        i = int(start * RATE)
        wav[i:i + 800] += click[:len(wav[i:i + 800])] * (0.9 if k % ACCENT_EVERY == 0 else 0.22)
    return wav


@pytest.fixture(scope="module")
def music(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("music")
    sf.write(folder / "clicks.wav", recording(), RATE)
    sf.write(folder / "silence.flac", np.zeros(9 * RATE, np.float32), RATE)
    (folder / "broken.ogg").write_text("not audio")  # skipped with a note, not fatal
    return folder


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    return write_pictures(tmp_path_factory.mktemp("pictures"))


@pytest.fixture(scope="module")
def real_set(music, pictures, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("real") / "set"
    argv = ["--out", str(out), "--music", str(music), "--pictures", str(pictures), "--seconds", "4", "--per-track", "2"]
    assert rm.main(argv) == 0
    return out


def test_events_sit_on_the_accented_beats(real_set):
    rows = all_rows(real_set)
    assert sorted(rows) == ["rmu001_000", "rmu001_001"]  # tracks sort as broken, clicks, silence: only clicks count
    accents = 0.25 + np.arange(0, 20, ACCENT_EVERY) * 60.0 / BPM
    for split, row in rows.values():
        assert split == "train" and row["program"] is None and row["caption"] is None
        assert abs(row["tempo"] - BPM) / BPM < 0.05
        assert row["key"] == "A" and row["mode"] == "minor"
        events = np.array(row["event_times"]) + row["start"]  # seconds in the recording
        assert len(events) >= 1 and set(row["event_times"]) <= set(row["beat_times"])
        assert np.abs(events[:, None] - accents[None, :]).min(axis=1).max() < 0.05, (events, accents)
        assert (real_set / row["video_path"]).stat().st_size > 0 and (real_set / row["music_path"]).is_file()
        assert "real_music" in row["tags"]
    window, rate = sf.read(real_set / rows["rmu001_001"][1]["music_path"])
    assert rate == RATE and len(window) == 4 * RATE
    assert "clicks.wav" in (real_set / "MUSIC.md").read_text()


def test_rerun_resumes_without_redrawing(real_set, music, pictures):
    before = {p.name: p.stat().st_mtime_ns for p in (real_set / "clips").iterdir()}
    argv = ["--out", str(real_set), "--music", str(music), "--pictures", str(pictures), "--seconds", "4",
            "--per-track", "2"]
    assert rm.main(argv) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (real_set / "clips").iterdir()} == before


def test_pick_events_strongest_beats_two_apart():
    beats = np.arange(8) * 0.5
    assert rm.pick_events(beats, np.array([1, 5, 4.5, 1, 4, 1, 1, 1.0])) == [0.5, 2.0]  # 4.5 is next to 5
    assert rm.pick_events(beats, np.ones(8)) == [0.0]  # even strength: one event, not a random handful
    assert rm.window_starts(100.0, 8.0, 3) == [0, 6, 11] and rm.window_starts(20.0, 8.0, 5) == [0, 1]


def test_no_audio_is_a_one_line_error(tmp_path, pictures, capsys):
    (tmp_path / "empty").mkdir()
    assert rm.main(["--out", str(tmp_path / "out"), "--music", str(tmp_path / "empty"),
                    "--pictures", str(pictures)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m data.real_music: error: found no audio files") and "\n" not in err
    sf.write(tmp_path / "empty" / "quiet.wav", np.zeros(5 * RATE, np.float32), RATE)
    assert rm.main(["--out", str(tmp_path / "out"), "--music", str(tmp_path / "empty"),
                    "--pictures", str(pictures), "--seconds", "4"]) == 2
    assert "no window of the 1 track(s) has a steady beat" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing half-made


def test_join_keeps_splits_and_links_files(real_set, tmp_path):
    synth = tmp_path / "synth"
    synthetic_generate(synth, n=3, seconds=2.5, seed=5, height=64, renderer="additive", progress=False)
    cached = synth / "features" / "motion__abc"
    cached.mkdir(parents=True)
    first = sorted(all_rows(synth))[0]
    np.savez(cached / f"{first}.npz", x=np.zeros(3))
    out = tmp_path / "joined"
    assert join_sets.main([str(synth), str(real_set), "--out", str(out)]) == 0
    joined, parts = all_rows(out), {**all_rows(synth), **all_rows(real_set)}
    assert {k: v[0] for k, v in joined.items()} == {k: v[0] for k, v in parts.items()}
    for clip_id, (_, row) in joined.items():
        source = synth if clip_id in all_rows(synth) else real_set
        assert os.path.samefile(out / row["music_path"], source / row["music_path"])
    assert os.path.samefile(out / "features" / "motion__abc" / f"{first}.npz", cached / f"{first}.npz")
    assert json.loads((out / "schema.json").read_text())["source"] == "join"
    assert len(load_from_disk(str(out))["train"]) == sum(split == "train" for split, _ in parts.values())


def test_join_refuses_held_out_sets_and_duplicate_ids(real_set, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(real_set, copy)
    assert join_sets.main([str(real_set), str(copy), "--out", str(tmp_path / "a")]) == 2
    assert "is in both" in capsys.readouterr().err
    info = json.loads((copy / "schema.json").read_text())
    (copy / "schema.json").write_text(json.dumps({**info, "do_not_train": True}))
    assert join_sets.main([str(copy), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert "do_not_train" in err and "\n" not in err and not (tmp_path / "b").exists()
