"""Both streams on a generated video: shapes, timestamps, one decode, and the motion features see what moves."""
from __future__ import annotations

import numpy as np
import pytest

from media.video import VideoError, probe_video, sample_frames
from model.config import MotionConfig
from model.motion import motion_features
from tests.conftest import write_video


def test_probe_reads_duration_size_and_audio(tmp_path):
    path = write_video(tmp_path / "a.mp4", seconds=2.0, audio=True)
    info = probe_video(path)
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert (info.width, info.height) == (96, 64) and info.has_audio


def test_sampled_frames_follow_both_grids(video_path):
    frames = sample_frames(video_path, clip_fps=2.0, clip_size=32, flow_fps=10.0, flow_width=64)
    assert frames.clip_frames.shape == (6, 32, 32, 3)  # 3 s at 2 fps
    assert frames.flow_frames.shape[0] == 30 and frames.flow_frames.shape[2] == 64  # 3 s at 10 fps
    assert np.allclose(frames.clip_times, np.arange(6) * 0.5, atol=1 / 24)
    assert np.allclose(frames.flow_times, np.arange(30) * 0.1, atol=1 / 24)


def test_window_start_and_length(video_path):
    frames = sample_frames(video_path, 2.0, 32, 10.0, 64, start=1.0, max_seconds=1.0)
    assert frames.flow_frames.shape[0] == 10 and frames.clip_frames.shape[0] == 2
    assert frames.flow_times[0] == pytest.approx(0.0, abs=1 / 24)  # times restart at the window start


def test_slow_source_gives_fewer_samples_with_true_times(tmp_path):
    path = write_video(tmp_path / "slow.mp4", seconds=2.0, fps=5)
    frames = sample_frames(path, 2.0, 32, 10.0, 64)
    assert frames.flow_frames.shape[0] == 10  # 5 fps source: one sample per frame, no duplicates
    assert np.allclose(np.diff(frames.flow_times), 0.2, atol=1e-3)


def test_motion_features_shape_and_what_they_measure(video_path):
    cfg = MotionConfig(width=64)
    frames = sample_frames(video_path, 2.0, 32, 10.0, 64)
    features, times = motion_features(frames.flow_frames, frames.flow_times, cfg)
    assert features.shape == (29, cfg.feature_dim) and times.shape == (29,)
    assert np.allclose(times, frames.flow_times[1:])
    directions = features[:, 4:4 + cfg.direction_bins]
    assert np.allclose(directions.sum(1)[features[:, 0] > 1e-4], 1.0, atol=1e-4)
    cut_score = features[:, -1]
    cuts = np.abs(times - np.round(times)) < 0.05  # the background jumps at 1 s and 2 s
    assert cut_score[cuts].min() > 3 * cut_score[~cuts].max()


def _textured_square(size: int, side: int, x: float) -> np.ndarray:
    """A grey [size, size] frame: a checkered square of ``side`` px at column ``x`` on a flat background."""
    frame = np.full((size, size), 60, np.uint8)
    yy, xx = np.mgrid[0:side, 0:side]
    left = int(round(x))
    frame[10:10 + side, left:left + side] = np.where((yy // 4 + xx // 4) % 2, 230, 140)
    return frame


@pytest.mark.parametrize("preset", ["ultrafast", "medium"])
def test_speed_stats_tell_a_small_fast_object_from_a_large_slow_one(preset):
    cfg = MotionConfig(width=128, speed_stats=True, dis_preset=preset)
    times = np.arange(6) * 0.1
    small_fast = np.stack([_textured_square(128, 16, 10 + 6 * i) for i in range(6)])  # 6 px per frame
    large_slow = np.stack([_textured_square(128, 48, 10 + 2 * i) for i in range(6)])  # 9x the area, 2 px per frame
    fast, _ = motion_features(small_fast, times, cfg)
    slow, _ = motion_features(large_slow, times, cfg)
    assert fast.shape == (5, cfg.feature_dim) == (5, MotionConfig().feature_dim + 3)
    mean, share, fast_p90 = 0, 4, 6  # the speed statistics follow the 4 whole-frame magnitude statistics
    assert np.median(fast[:, mean]) < 2 * np.median(slow[:, mean])  # the whole-frame mean barely tells them apart
    assert np.median(slow[:, share]) > 1.5 * np.median(fast[:, share])  # more of the frame moves ...
    for frames, pixels_per_frame in ((fast, 6), (slow, 2)):  # ... but the moving pixels' speed is measured
        assert np.median(frames[:, fast_p90]) * 128 == pytest.approx(pixels_per_frame, rel=0.2)
    assert np.all(fast[:, -1] < 0.3)  # the cut score is still the last column, and no cut here


def test_single_frame_gives_empty_motion():
    features, times = motion_features(np.zeros((1, 16, 16), np.uint8), np.zeros(1), MotionConfig(width=16))
    assert features.shape == (0, MotionConfig(width=16).feature_dim) and times.shape == (0,)


def test_farneback_is_selectable(video_path):
    frames = sample_frames(video_path, 2.0, 32, 10.0, 64, max_seconds=0.5)
    features, _ = motion_features(frames.flow_frames, frames.flow_times, MotionConfig(width=64, algorithm="farneback"))
    assert features.shape[0] == 4 and np.isfinite(features).all()


def test_extract_features_runs_both_streams(tiny_model, video_path):
    features = tiny_model.extract_features(video_path)
    assert features.semantic.shape == (6, tiny_model.semantic_encoder.dim)
    assert features.motion.shape == (29, tiny_model.config.motion.feature_dim)
    assert features.duration == pytest.approx(3.0, abs=0.05)
    assert np.allclose(features.semantic.norm(dim=-1).numpy(), 1.0, atol=1e-4)


@pytest.mark.parametrize("content, message", [(None, "no such file"), (b"", "empty file"),
                                              (b"hello, not a video" * 50, "not a readable video")])
def test_bad_files_raise_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoError, match=message):
        sample_frames(path, 2.0, 32, 10.0, 64)


def test_rotated_phone_video_is_turned_upright_as_players_show_it(tmp_path):
    import subprocess

    source = write_video(tmp_path / "landscape.mp4", seconds=1.0, size=(96, 64))
    rotated = tmp_path / "rotated.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(source), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(rotated)], check=True)
    upright = tmp_path / "upright.raw"  # ffmpeg applies the display rotation when it decodes
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(rotated), "-frames:v", "1", "-f", "rawvideo",
                    "-pix_fmt", "gray", "-vf", "scale=64:96", str(upright)], check=True)
    frames = sample_frames(rotated, 2.0, 32, 10.0, 64, max_seconds=0.2)
    assert frames.flow_frames.shape[1:] == (96, 64)  # portrait now
    expected = np.fromfile(upright, np.uint8).reshape(96, 64).astype(float)
    assert np.abs(frames.flow_frames[0].astype(float) - expected).mean() < 12


@pytest.mark.parametrize("size", [(16, 16), (33, 17), (1920, 1080)])
def test_odd_tiny_and_large_sizes(tmp_path, size):
    path = write_video(tmp_path / "v.mp4", seconds=0.5, fps=10, size=size, codec="mpeg4" if size[0] % 2 else "libx264")
    frames = sample_frames(path, 2.0, 32, 10.0, 64)
    assert frames.clip_frames.shape[1:] == (32, 32, 3) and frames.flow_frames.shape[2] == 64


def test_steady_motion_stays_steady_on_an_uneven_sampling_grid():
    """A 24 fps pan sampled on the 10 fps grid is 2 or 3 source frames apart in turn: per-pair flow would pulse."""
    import cv2

    texture = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (64, 160)).astype(np.uint8), (7, 7), 2)
    source_times = np.arange(48) / 24.0
    picked = [int(np.ceil(k * 0.1 * 24 - 1e-6)) for k in range(20)]  # first source frame at or after each grid time
    frames = np.stack([texture[:, 2 * i: 2 * i + 64] for i in picked])  # 2 px per source frame
    features, _ = motion_features(frames, source_times[picked], MotionConfig(width=64))
    gaps = np.diff(picked)
    assert set(gaps) == {2, 3}
    mean_magnitude = features[:, 0]
    assert mean_magnitude.max() / mean_magnitude.min() < 1.15  # per-pair magnitudes would differ by 1.5x


def test_a_tower_whose_weights_load_next_is_not_called_random(caplog, tmp_path):
    """open_clip logs "No pretrained weights loaded ... initialized randomly" for every random-init tower; for the
    demo model's tower, whose own weights are loaded right after, that line would be false, so it is not shown."""
    import dataclasses
    import logging

    from safetensors.torch import save_file

    from model.config import load_config
    from model.semantic import build_semantic_encoder

    cfg = load_config("tiny").semantic
    with caplog.at_level(logging.WARNING):
        tower = build_semantic_encoder(cfg)
    assert "initialized randomly" in caplog.text  # true here: nothing is loaded
    save_file({k: v.contiguous() for k, v in tower.visual.state_dict().items()}, str(tmp_path / "tower.safetensors"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        build_semantic_encoder(dataclasses.replace(cfg, weights=str(tmp_path / "tower.safetensors")))
    assert "initialized randomly" not in caplog.text
    assert logging.root.manager.disable == logging.NOTSET  # logging is back on
