"""The synthetic set: deterministic, in the clip schema, and its music and video really follow the events."""
from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from data import synthetic
from data.schema import MUSIC_SAMPLE_RATE, SPLITS, check_schema, clip_features
from data.splits import assign_splits, parse_fractions

ROOT = Path(__file__).resolve().parent.parent
HAS_FLUIDSYNTH = shutil.which("fluidsynth") is not None and Path(synthetic.DEFAULT_SOUNDFONT).is_file()
TINY = dict(seconds=2.0, height=32, fps=12, renderer="additive", progress=False)  # a clip in ~0.1 s


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for d in ("clips", "music") for p in sorted((out / d).iterdir())}


def _rows(out: Path) -> dict[str, list[dict]]:
    from datasets import load_from_disk

    dataset = load_from_disk(str(out))
    return {name: dataset[name].to_list() for name in SPLITS}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "set"
    synthetic.generate(out, n=8, seed=5, fractions=(0.5, 0.25, 0.25), **TINY)
    return out


def test_same_seed_same_set_other_seed_other_set(tmp_path, small_set):
    # rendered by 2 worker processes this time: same rows, same bytes
    synthetic.generate(tmp_path / "again", n=8, seed=5, fractions=(0.5, 0.25, 0.25), workers=2, **TINY)
    assert _rows(tmp_path / "again") == _rows(small_set)
    assert _files(tmp_path / "again") == _files(small_set)  # byte-identical mp4 and wav
    assert synthetic.sample_clip_spec(5, 3, 2.0) == synthetic.sample_clip_spec(5, 3, 2.0)
    other = [synthetic.sample_clip_spec(6, i, 2.0) for i in range(8)]
    same = [synthetic.sample_clip_spec(5, i, 2.0) for i in range(8)]
    assert [(s.bpm, s.key, s.hue) for s in other] != [(s.bpm, s.key, s.hue) for s in same]


def test_schema_columns_media_and_splits(small_set):
    from datasets import load_from_disk

    info = check_schema(small_set)
    assert info["source"] == "synthetic" and info["renderer"] == "additive"
    dataset = load_from_disk(str(small_set))
    assert set(dataset) == set(SPLITS)
    ids = {name: {row["video_id"] for row in dataset[name]} for name in SPLITS}
    assert sum(len(v) for v in ids.values()) == len(set().union(*ids.values())) == 8  # no video in two splits
    for name in SPLITS:
        assert dataset[name].features == clip_features()
        for row in dataset[name]:
            _check_row(small_set, row)


def _check_row(out: Path, row: dict) -> None:
    assert row["id"] == row["video_id"] and row["duration"] == 2.0 and row["start"] == 0.0
    assert set(row["event_times"]) <= set(row["beat_times"]) and row["event_times"]
    assert np.allclose(np.diff(row["beat_times"]), 60 / row["tempo"])
    assert 70 <= row["tempo"] <= 150 and row["mode"] in ("major", "minor") and row["key"] in synthetic.KEY_NAMES
    mood = next(m for m in synthetic.MOODS if m.mode == row["mode"])
    assert row["program"] in mood.programs and mood.name in row["tags"]
    audio, sr = sf.read(out / row["music_path"], dtype="float32")
    assert sr == MUSIC_SAMPLE_RATE and audio.ndim == 1 and len(audio) == 2 * sr
    assert sf.info(str(out / row["music_path"])).subtype == "PCM_16" and abs(np.abs(audio).max() - 0.9) < 1e-3
    with av.open(str(out / row["video_path"])) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and video.format.name == "yuv420p"
        assert (video.width, video.height) == (56, 32) and video.frames == 24
        assert sound.codec_context.name == "aac" and sound.rate == sr


def test_assign_splits_does_not_move_when_ids_are_added():
    old = [f"video{i}" for i in range(300)]
    grown = old + [f"new{i}" for i in range(700)]
    random.Random(0).shuffle(grown)
    before, after = assign_splits(old, (0.7, 0.2, 0.1), seed=3), assign_splits(grown, (0.7, 0.2, 0.1), seed=3)
    assert all(after[i] == before[i] for i in old)
    counts = [sum(1 for s in after.values() if s == name) for name in SPLITS]
    assert abs(counts[0] - 700) < 60 and abs(counts[1] - 200) < 50 and abs(counts[2] - 100) < 40
    assert assign_splits(old, (0.7, 0.2, 0.1), seed=4) != before  # the seed matters
    assert set(assign_splits(old, (0.0, 1.0, 0.0)).values()) == {"test"}


def _onset_agreement(audio: np.ndarray, spec: synthetic.ClipSpec) -> tuple[float, float]:
    """(share of events with a detected onset within 50 ms, median onset strength at events / at other beats)."""
    import librosa

    onsets = librosa.onset.onset_detect(y=audio, sr=MUSIC_SAMPLE_RATE, units="time")
    recall = np.mean([np.min(np.abs(onsets - t), initial=np.inf) <= 0.05 for t in spec.event_times()])
    strength = librosa.onset.onset_strength(y=audio, sr=MUSIC_SAMPLE_RATE)
    times = librosa.times_like(strength, sr=MUSIC_SAMPLE_RATE)
    peak = lambda t: strength[(times >= t - 0.03) & (times <= t + 0.06)].max()  # noqa: E731
    others = [t for t in spec.beat_times if t not in spec.event_times()]
    return float(recall), float(np.median([peak(t) for t in spec.event_times()]) / np.median([peak(t) for t in others]))


@pytest.mark.parametrize("renderer", [
    pytest.param("fluidsynth", marks=pytest.mark.skipif(not HAS_FLUIDSYNTH, reason="no fluidsynth or SoundFont")),
    "additive",
])
def test_music_onsets_fall_on_event_times(renderer):
    for index in range(3):
        spec = synthetic.sample_clip_spec(11, index, 12.0)
        recall, contrast = _onset_agreement(synthetic.render_music(spec, renderer), spec)
        assert recall >= 0.9, f"{renderer} clip {index}: only {recall:.0%} of events have an onset within 50 ms"
        assert contrast >= 2.0, f"{renderer} clip {index}: events are only {contrast:.1f}x stronger than other beats"


def test_video_changes_exactly_at_event_frames():
    for index in range(4):
        spec = synthetic.sample_clip_spec(7, index, 6.0, fps=12, height=32)
        frames = np.stack(list(synthetic.render_frames(spec))).astype(np.float32)
        change = np.concatenate([[0.0], np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))])  # change into frame k
        quiet = np.median(change)
        for t in spec.event_times():
            k = round(t * spec.fps)
            assert change[k] > 4 * quiet and change[k] > 2 * change[k - 1], f"clip {index}: nothing at {t:.3f} s"


def test_resume_keeps_finished_clips_and_refuses_other_settings(tmp_path):
    out = tmp_path / "set"
    synthetic.generate(out, n=2, seed=1, **TINY)
    first_mp4, first_wav = synthetic.media_paths(out, synthetic.clip_id(1, 0))
    stamps = (first_mp4.stat().st_mtime_ns, first_wav.stat().st_mtime_ns)
    synthetic.media_paths(out, synthetic.clip_id(1, 1))[0].unlink()  # as if killed while writing clip 1
    (out / "clips" / "syn1_000001.partial.mp4").write_bytes(b"half a file")
    synthetic.generate(out, n=3, seed=1, **TINY)
    assert (first_mp4.stat().st_mtime_ns, first_wav.stat().st_mtime_ns) == stamps
    assert sorted(p.name for p in (out / "clips").iterdir()) == [f"syn1_00000{i}.mp4" for i in range(3)]
    assert sum(len(rows) for rows in _rows(out).values()) == 3
    with pytest.raises(synthetic.SyntheticError, match="other settings"):
        synthetic.generate(out, n=3, seed=2, **TINY)
    synthetic.generate(out, n=1, seed=2, overwrite=True, **TINY)
    assert sorted(p.name for p in (out / "clips").iterdir()) == ["syn2_000000.mp4"]


def test_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(synthetic.SyntheticError, match="not made by data.synthetic"):
        synthetic.generate(tmp_path, n=1, seed=0, **TINY)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("bad", [
    ["--n", "0"], ["--seconds", "0"], ["--seconds", "-3"], ["--splits", "0.5,0.2"], ["--splits", "a,b,c"],
    ["--splits", "0.9,0.2,-0.1"], ["--size", "33"], ["--seed", "-1"],
])
def test_bad_arguments_are_one_line_errors(bad, capsys):
    argv = {"--out": "unused", "--n": "2", "--seconds": "1", "--seed": "0"}
    argv.update(dict(zip(bad[::2], bad[1::2])))
    with pytest.raises(SystemExit) as exit_info:
        synthetic.parse_args([x for pair in argv.items() for x in pair])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("python -m data.synthetic: error: --")


def test_command_line_error_has_no_traceback(tmp_path):
    command = [sys.executable, "-m", "data.synthetic", "--out", str(tmp_path), "--n", "-4", "--seconds", "5",
               "--seed", "0"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "--n must be a positive" in result.stderr
    assert parse_fractions("0.7,0.2,0.1") == (0.7, 0.2, 0.1)
