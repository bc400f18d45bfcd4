"""The photo world (data.photo_world): a synthetic set re-skinned with pictures. Rows keep the source's ground
truth, split and music; every event shows on its frame; same seed, same clip; held-out sets and too few pictures
are refused; with --keep-source the source rows' cached features are reused, not recomputed.

Offline and small: a 4-clip, 2.5 s synthetic source (additive music) and four generated PNG pictures.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
from datasets import load_from_disk

from data import photo_world as pw
from data.schema import SPLITS
from data.synthetic import generate as synthetic_generate


def write_pictures(folder: Path, count: int = 4) -> Path:
    """Photo-like textures (smooth blobs + fine grain + a gradient), each in other colours."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        rng = np.random.default_rng(k)
        blobs = cv2.resize(rng.random((9, 16, 3)).astype(np.float32), (320, 180), interpolation=cv2.INTER_CUBIC)
        grain = cv2.resize(rng.random((45, 80, 3)).astype(np.float32), (320, 180), interpolation=cv2.INTER_LINEAR)
        ramp = np.linspace(0, 1, 320, dtype=np.float32)[None, :, None]
        image = np.clip(255 * (0.5 * blobs + 0.3 * grain + 0.2 * ramp), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"picture{k}.png"), image)
    return folder


def all_rows(dataset_dir: Path) -> dict[str, tuple[str, dict]]:
    dataset = load_from_disk(str(dataset_dir))
    return {row["id"]: (split, row) for split in SPLITS for row in dataset[split]}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    return write_pictures(tmp_path_factory.mktemp("pictures"))


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("source") / "set"
    synthetic_generate(out, n=4, seconds=2.5, seed=3, height=64, renderer="additive", progress=False)
    return out


@pytest.fixture(scope="module")
def photo(source, pictures, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("photo") / "set"
    assert pw.main(["--source", str(source), "--out", str(out), "--pictures", str(pictures), "--seed", "0"]) == 0
    return out


def test_rows_keep_the_source_truth_split_and_music(source, photo):
    src, out = all_rows(source), all_rows(photo)
    assert sorted(out) == sorted(f"pho{i}" for i in src)
    for clip_id, (split, row) in out.items():
        src_split, src_row = src[clip_id[3:]]
        assert split == src_split and row["video_id"] == clip_id
        assert row["video_path"] == f"clips/{clip_id}.mp4" and row["music_path"] == f"music/{clip_id}.wav"
        for column in ("start", "duration", "event_times", "beat_times", "tempo", "key", "mode", "program"):
            assert row[column] == src_row[column], column
        assert (photo / row["music_path"]).stat().st_ino == (source / src_row["music_path"]).stat().st_ino
        kinds = [part.split("@")[0] for part in row["title"].split("; events ")[1].split(", ")]
        assert len(kinds) == len(row["event_times"]) and set(kinds) <= set(pw.EVENT_KINDS)
        assert set(kinds) <= set(row["tags"]) and "photo_world" in row["tags"]
        capture = cv2.VideoCapture(str(photo / row["video_path"]))
        frames, fps = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), capture.get(cv2.CAP_PROP_FPS)
        capture.release()
        assert round(fps) in pw.FPS_CHOICES and abs(frames / fps - row["duration"]) < 1.5 / fps
    info = json.loads((photo / "schema.json").read_text())
    assert info["source"] == "photo_world" and info["source_seed"] == 3 and info["n_pictures"] == 4
    assert not info.get("do_not_train")
    assert "picture0.png" in (photo / "PICTURES.md").read_text() or "picture1.png" in (photo / "PICTURES.md").read_text()


def decoded(path: Path) -> list[np.ndarray]:
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32))
    capture.release()
    return frames


def test_every_event_shows_on_its_frame(pictures, tmp_path):
    """A clip with one event of each kind: frame difference peaks within a frame of each cut, flash, punch and
    shake; the mean horizontal flow changes sign at the reversal."""
    seconds, fps, sr = 3.5, 24, 32_000
    music = tmp_path / "music.wav"
    sf.write(music, np.zeros(int(seconds * sr), np.float32), sr)
    pool = pw.picture_pool([pictures])
    events = ((0.5, "cut"), (1.25, "reversal"), (2.0, "flash"), (2.5, "punch"), (3.0, "shake"))
    spec = pw.PhotoSpec(id="phoevents", source_id="events", seconds=seconds, fps=fps, width=256, height=144, crf=23,
                        bpm=120.0, events=events, grade=pw.Grade(0.6, 0.6, 0.5), grade_strength=0.6,
                        pictures=tuple(pool[:2]), sprites=(), music_source=str(music), layout_seed=11)
    (tmp_path / "clips").mkdir()
    pw.make_clip(spec, tmp_path)
    frames = decoded(tmp_path / "clips" / "phoevents.mp4")
    assert len(frames) == round(seconds * fps)
    diff = np.array([0.0] + [np.abs(b - a).mean() for a, b in zip(frames[:-1], frames[1:])])
    for t, kind in events:
        k = round(t * fps)
        if kind == "reversal":
            flow = [cv2.calcOpticalFlowFarneback(frames[j - 1], frames[j], None, 0.5, 3, 15, 3, 5, 1.2, 0)[..., 0].mean()
                    for j in (*range(k - 4, k), *range(k + 1, k + 5))]
            before, after = np.mean(flow[:4]), np.mean(flow[4:])
            assert before * after < 0 and min(abs(before), abs(after)) > 0.3, (before, after)
            continue
        window = np.arange(k - 4, k + 5)
        peak = int(window[np.argmax(diff[window])])
        onset = int(window[np.argmax(diff[window] > 0.6 * diff[peak])])  # the first frame of the jump
        assert abs(peak - k) <= 1 and abs(onset - k) <= 1, (kind, k, peak, onset, diff[window].round(1))
        assert diff[peak] > 2 * np.median(diff), (kind, diff[peak], np.median(diff))


def test_same_seed_same_clip(source, pictures):
    from data.photo_world import plan_clip, read_source, render_frames

    info, rows = read_source(source)
    pool = pw.picture_pool([pictures])
    split, row = rows[1]
    a = plan_clip(row, 1, 0, info, pool, "music.wav")
    assert a == plan_clip(row, 1, 0, info, pool, "music.wav")
    assert np.array_equal(next(iter(render_frames(a))), next(iter(render_frames(a))))
    others = [plan_clip(row, 1, seed, info, pool, "music.wav") for seed in (1, 2, 3)]
    assert any(o != a for o in others)
    assert pw.source_clip_spec(row, info) is not None  # the source's palette is re-derived exactly


def test_refuses_a_held_out_source(tmp_path, pictures, capsys):
    held = tmp_path / "held"
    held.mkdir()
    (held / "schema.json").write_text(json.dumps({"schema_version": 1, "source": "heldout_events",
                                                  "do_not_train": True}))
    assert pw.main(["--source", str(held), "--out", str(tmp_path / "out"), "--pictures", str(pictures)]) == 2
    error = capsys.readouterr().err.strip()
    assert "do_not_train" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_too_few_pictures_is_a_clear_error(tmp_path, source, capsys):
    few = write_pictures(tmp_path / "few", count=3)
    (few / "broken.png").write_bytes(b"not a picture")
    assert pw.main(["--source", str(source), "--out", str(tmp_path / "out"), "--pictures", str(few)]) == 2
    error = capsys.readouterr().err.strip()
    assert "found 3 decodable picture" in error and len(error.splitlines()) == 1


def test_keep_source_reuses_the_source_features(source, pictures, tmp_path):
    from data.features import main as features_main

    src = tmp_path / "src"
    shutil.copytree(source, src)
    assert features_main(["--dataset", str(src), "--config", "tiny", "--no-progress"]) == 0
    cached = {p.relative_to(src): p.stat() for p in (src / "features").rglob("*.npz")}
    assert len(cached) == 4 * 3
    out = tmp_path / "out"
    assert pw.main(["--source", str(src), "--out", str(out), "--pictures", str(pictures), "--keep-source",
                    "--n", "3"]) == 0
    rows = all_rows(out)
    kept = [i for i in all_rows(src) if i in rows]
    assert len(rows) == 6 and len(kept) == 3
    for clip_id in kept:
        assert rows[clip_id][1] == {k: v for k, v in all_rows(src)[clip_id][1].items() if k in rows[clip_id][1]}
    assert not any(name.startswith(("semantic__", "motion__", "codes__")) for name in
                   load_from_disk(str(out))["train"].column_names)
    assert features_main(["--dataset", str(out), "--config", "tiny", "--no-progress"]) == 0
    for relative, before in cached.items():
        if relative.stem not in kept:
            assert not (out / relative).exists()
            continue
        after = (out / relative).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), relative
    photo_files = [p for p in (out / "features").rglob("pho*.npz")]
    assert len(photo_files) == 3 * 3  # only the new clips were computed
    dataset = load_from_disk(str(out))
    assert any(name.startswith("semantic__") for name in dataset["train"].column_names)
