"""Feature cache (data.features): columns named by settings, train-time reading, resume after SIGKILL, staleness.

Offline with the tiny preset, on a dataset curated from four generated 3 s videos (2 s clips).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from datasets import load_from_disk

from data.curate import main as curate_main
from data.features import KINDS, CACHE_DIR, cached_columns, feature_columns, main, row_features
from data.schema import SPLITS
from model.config import load_config
from test_curate import FAST, make_good_videos

REPO = Path(__file__).resolve().parent.parent
TINY = load_config("tiny")


def add_features(dataset: Path, *extra: str) -> int:
    return main(["--dataset", str(dataset), "--config", "tiny", "--no-progress", *extra])


def all_rows(dataset_dir: Path) -> list[dict]:
    dataset = load_from_disk(str(dataset_dir))
    return [row for split in SPLITS for row in dataset[split]]


def cache_times(dataset_dir: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (dataset_dir / CACHE_DIR).rglob("*.npz")}


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> tuple[Path, Path]:
    """(videos folder, dataset curated from it without features)."""
    videos = make_good_videos(tmp_path_factory.mktemp("videos"), names=("a", "b", "c", "d"))
    out = tmp_path_factory.mktemp("curated") / "dataset"
    assert curate_main([str(a) for a in ["--input", videos, "--out", out, *FAST]]) == 0
    return videos, out


@pytest.fixture(scope="module")
def featured(curated, tmp_path_factory) -> Path:
    """A copy of the curated dataset with the tiny preset's features (read-only for the tests)."""
    out = tmp_path_factory.mktemp("featured") / "dataset"
    shutil.copytree(curated[1], out)
    assert add_features(out) == 0
    return out


def test_columns_are_named_by_settings_and_rows_read_back(featured, capsys):
    dataset = load_from_disk(str(featured))
    columns = cached_columns(dataset, TINY)
    assert columns == feature_columns(TINY)
    assert cached_columns(dataset["train"], TINY) == columns  # a single split works too
    assert str(dataset["train"].features[columns["semantic"]].dtype) == "float16"
    rows = all_rows(featured)
    assert len(rows) == 4
    for row in rows:
        features, codes = row_features(row, columns)
        assert features.semantic.shape == (4, 32) and features.semantic.dtype == torch.float32  # 2 fps x 2 s, CLIP dim
        assert torch.allclose(features.semantic_times, torch.tensor([0.0, 0.5, 1.0, 1.5]))
        assert features.motion.shape == (19, TINY.motion.feature_dim)  # 10 fps x 2 s = 20 frames -> 19 pairs
        assert features.motion_times.shape == (19,) and features.duration == 2.0
        assert codes.shape == (4, 100) and codes.dtype == torch.long  # 4 codebooks x 50 Hz x 2 s
        assert 0 <= int(codes.min()) and int(codes.max()) < 64
    numpy_row = dataset["train"].with_format("numpy")[0]
    features, codes = row_features(numpy_row, columns)
    assert features.semantic.shape == (4, 32) and codes.shape == (4, 100)


def test_cached_features_are_the_models_own(featured):
    """The cache holds what the model computes on the fly at inference (same encoders, same seed)."""
    from model.v2m import VideoToMusic

    model = VideoToMusic.from_config(TINY)
    row = all_rows(featured)[0]
    cached, codes = row_features(row, feature_columns(TINY))
    live = model.extract_features(featured / row["video_path"], max_seconds=row["duration"])
    assert torch.allclose(cached.semantic, live.semantic, atol=2e-3)  # float16 storage
    assert torch.allclose(cached.motion, live.motion) and torch.equal(cached.motion_times, live.motion_times)
    music, rate = sf.read(str(featured / row["music_path"]), dtype="float32")
    assert rate == model.codec.sample_rate
    assert torch.equal(codes, model.codec.encode(torch.from_numpy(music)[None, None])[0])


def test_a_changed_setting_gets_new_columns_and_keeps_the_rest(featured, tmp_path):
    out = tmp_path / "dataset"
    shutil.copytree(featured, out)
    before = cache_times(out)
    assert add_features(out, "--set", "motion.flow_fps=5") == 0
    changed = load_config("tiny", ["motion.flow_fps=5"])
    old, new = feature_columns(TINY), feature_columns(changed)
    assert new["motion"] != old["motion"] and new["motion_times"] != old["motion_times"]
    assert (new["semantic"], new["codes"]) == (old["semantic"], old["codes"])
    dataset = load_from_disk(str(out))
    assert cached_columns(dataset, changed) == new and cached_columns(dataset, TINY) == old  # both presets kept
    assert cached_columns(dataset, load_config("tiny", ["semantic.clip_fps=4"])) is None
    assert all(cache_times(out)[path] == mtime for path, mtime in before.items())  # semantic, codes: not redone
    features, _ = row_features(dataset["train"][0], new)
    assert features.motion.shape == (9, changed.motion.feature_dim)  # 5 fps x 2 s = 10 frames -> 9 pairs


def test_resume_after_sigkill_recomputes_nothing_finished(curated, featured, tmp_path):
    out = tmp_path / "dataset"
    shutil.copytree(curated[1], out)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "data.features", "--dataset", str(out), "--config", "tiny", "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not list((out / CACHE_DIR).rglob("*.npz")):
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed part way"
    finished = cache_times(out)
    assert 1 <= len(finished) < len(KINDS) * 4
    assert add_features(out) == 0
    assert all(cache_times(out)[path] == mtime for path, mtime in finished.items())
    assert len(cache_times(out)) == len(KINDS) * 4
    assert not list((out / CACHE_DIR).glob("*/.*.partial"))  # a file being written at the kill is cleaned up
    columns = feature_columns(TINY)
    for resumed, clean in zip(all_rows(out), all_rows(featured)):
        for name in columns.values():
            assert np.array_equal(np.asarray(resumed[name]), np.asarray(clean[name])), name


def test_a_remade_clip_is_not_served_stale_features(curated, featured, tmp_path):
    """Re-curation drops the feature columns; the next run reuses the cache except for media that changed."""
    videos, _ = curated
    out = tmp_path / "dataset"
    shutil.copytree(featured, out)
    row = all_rows(out)[0]
    music = out / row["music_path"]
    audio, rate = sf.read(str(music), dtype="float32")
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, len(audio)).astype(np.float32)
    sf.write(str(music), noise, rate, subtype="PCM_16")  # other content, same length
    assert curate_main([str(a) for a in ["--input", videos, "--out", out, *FAST]]) == 0
    assert cached_columns(load_from_disk(str(out)), TINY) is None  # rebuilt without feature columns
    before = cache_times(out)
    assert add_features(out) == 0
    redone = {path for path, mtime in cache_times(out).items() if before.get(path) != mtime}
    assert {(p.parent.name.split("__")[0], p.stem) for p in redone} == {("codes", row["id"])}
    from model.v2m import VideoToMusic

    _, codes = row_features(all_rows(out)[0], feature_columns(TINY))
    remade, _ = sf.read(str(music), dtype="float32")
    assert torch.equal(codes, VideoToMusic.from_config(TINY).codec.encode(torch.from_numpy(remade)[None, None])[0])


def test_not_a_dataset_is_a_one_line_error(tmp_path, capsys):
    assert add_features(tmp_path) == 2  # a user error: exit 2, as every command
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "not a clip dataset" in error
