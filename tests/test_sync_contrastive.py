"""The contrastive sync term of the generator's training (issue 19; training/sync_contrastive.py).

The term reaches the probe and the time-aligned condition, never the frozen head; the shifted music is half a beat
off; train.py runs with it, keeps the probe in its checkpoints (a resumed run repeats the losses) and out of the
saved model; a weight without a head is a one-line error.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors import safe_open

from model.config import MotionConfig, SemanticConfig
from model.features import VideoFeatures
from model.video_music_embedding import EmbeddingConfig, VideoMusicEmbedding
from training.batches import Example, music_crops
from training.sync_contrastive import pool_steps, sync_contrastive_loss
from tests.test_train import FAST, _losses, _train


def _head() -> VideoMusicEmbedding:
    torch.manual_seed(0)
    return VideoMusicEmbedding(EmbeddingConfig(semantic_dim=8, motion_dim=6, width=16, dim=8, dilations=[1, 2]))


def test_the_term_trains_the_probe_and_the_condition_not_the_head():
    head = _head().requires_grad_(False)
    probe = torch.nn.Linear(12, 8)
    aligned = torch.randn(4, 50, 12, requires_grad=True)  # 1 s at 50 frames per second
    music, shifted = torch.randn(4, 40, 77), torch.randn(4, 40, 77)
    loss, figures = sync_contrastive_loss(probe, head, aligned, 50, music, shifted)
    loss.backward()
    assert torch.isfinite(loss) and aligned.grad.abs().sum() > 0 and probe.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in head.parameters())
    assert 0 <= figures["sync_accuracy"] <= 1 and 0 <= figures["sync_above_shift"] <= 1
    steps = pool_steps(torch.arange(50.0).repeat(1, 12, 1).transpose(1, 2), 50, 10)  # [1, 10, 12]
    assert torch.allclose(steps[0, :, 0], torch.arange(10.0) * 5 + 2)  # the mean of each 0.1 s step's 5 frames


def test_the_shifted_music_is_half_a_beat_off():
    frames = torch.arange(400.0)[:, None].repeat(1, 3)  # 10 s at 40 Hz, each frame holds its own index
    features = VideoFeatures(torch.zeros(2, 4), torch.zeros(2), torch.zeros(2, 3), torch.zeros(2), 10.0)
    example = Example(features, torch.zeros(4, 500, dtype=torch.long), torch.zeros(0), music_frames=frames, beat=0.5)
    own, off = music_crops(example, start=100, frame_rate=50, steps=30, generator=None)
    assert own.shape == (120, 3) and own[0, 0] == 80  # code frame 100 at 50 Hz = 2 s = music frame 80
    assert abs(off[0, 0] - own[0, 0]) == 10  # half of a 0.5 s beat at 40 Hz
    late = music_crops(example, start=470, frame_rate=50, steps=6, generator=None)[1]
    assert late[0, 0] == 376 - 10  # no room after the clip's end: the shift goes the other way


def _save_head(folder: Path) -> Path:
    from model.retrieval_checkpoint import save_head

    save_head(_head(), folder, SemanticConfig(), MotionConfig())
    return folder


def test_train_py_with_the_term_checkpoints_the_probe_and_resumes_exactly(synthetic_set, tmp_path):
    head = _save_head(tmp_path / "head")
    common = ["--dataset", str(synthetic_set), "train.max_steps=4", "train.save_every=2", *FAST,
              "fusion.time_aligned=true", "train.sync_contrastive_weight=0.5", f"train.sync_head={head}"]
    first = _train("--output-dir", str(tmp_path / "a"), *common)
    assert first.returncode == 0, first.stderr[-2000:]
    plain = _train("--output-dir", str(tmp_path / "plain"), *common[:-2])
    assert plain.returncode == 0 and _losses(tmp_path / "plain")[0] != _losses(tmp_path / "a")[0]  # the term counts
    checkpoint = next((tmp_path / "a" / "checkpoints").glob("step_*"))
    stored = [p for p in checkpoint.rglob("*.safetensors")]
    keys = set().union(*(set(safe_open(str(p), "pt").keys()) for p in stored))
    assert any(k.startswith("sync_probe.") for k in keys), keys
    with safe_open(str(tmp_path / "a" / "final" / "model.safetensors"), "pt") as saved:
        assert not any(k.startswith("sync_probe.") for k in saved.keys())  # inference never runs it
    from model.v2m import VideoToMusic

    VideoToMusic.from_pretrained(str(tmp_path / "a" / "final"))
    assert _train("--output-dir", str(tmp_path / "b"), *common).returncode == 0
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step_000004")
    resumed = _train("--output-dir", str(tmp_path / "b"), *common, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _losses(tmp_path / "b") == _losses(tmp_path / "a")


def test_a_weight_without_a_head_is_a_one_line_error(synthetic_set, tmp_path):
    result = _train("--dataset", str(synthetic_set), "--output-dir", str(tmp_path / "x"), *FAST,
                    "fusion.time_aligned=true", "train.sync_contrastive_weight=0.5")
    assert result.returncode != 0 and "needs train.sync_head" in result.stderr and "Traceback" not in result.stderr
