"""train.py as a user runs it: the loss falls, checkpoints resume exactly, and accelerate's DDP runs on 2 CPU processes."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

FAST = ["train.batch_size=2", "train.clip_seconds=1.0", "train.log_every=100"]


def _train(*args: str, env_extra: dict | None = None, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    command = (launcher or [sys.executable]) + [str(ROOT / "train.py"), "--config", "tiny", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_short_run_lowers_the_loss_and_saves_a_loadable_model(synthetic_set, tmp_path):
    result = _train("--dataset", str(synthetic_set), "--output-dir", str(tmp_path / "run"), "train.max_steps=25",
                    "train.lr=1e-2", "train.batch_size=4", "train.clip_seconds=2.0", "guidance.condition_dropout=0",
                    "train.eval_every=25")
    assert result.returncode == 0, result.stderr[-2000:]
    losses = _losses(tmp_path / "run")
    assert len(losses) == 25 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.15
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["val_loss"] is not None
    from model.v2m import VideoToMusic

    VideoToMusic.from_pretrained(str(tmp_path / "run" / "final"))


def test_resume_repeats_the_uninterrupted_losses(synthetic_set, tmp_path):
    common = ["--dataset", str(synthetic_set), "train.max_steps=8", "train.save_every=4", *FAST]
    assert _train("--output-dir", str(tmp_path / "a"), *common).returncode == 0
    assert _train("--output-dir", str(tmp_path / "b"), *common).returncode == 0
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step_000008")  # as if killed after the step-4 checkpoint
    (tmp_path / "b" / "checkpoints" / "step_000012.tmp").mkdir()  # a half-written checkpoint is ignored
    resumed = _train("--output-dir", str(tmp_path / "b"), *common, "--resume")
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout + resumed.stderr
    assert _losses(tmp_path / "b") == _losses(tmp_path / "a")


def _logged_steps(run: Path) -> int:
    log = run / "metrics.jsonl"
    return log.read_text().count("\n") if log.is_file() else 0


def test_sigkill_at_a_random_step_then_resume_repeats_the_uninterrupted_losses(synthetic_set, tmp_path):
    common = ["--dataset", str(synthetic_set), "train.max_steps=40", "train.save_every=4", *FAST]
    assert _train("--output-dir", str(tmp_path / "a"), *common).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    killed = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "--config", "tiny", "--output-dir",
                               str(tmp_path / "b"), *common], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_at, deadline = random.randint(5, 35), time.monotonic() + 300  # after the step-4 checkpoint, mid-run
    checkpoints = tmp_path / "b" / "checkpoints"
    while not (list(checkpoints.glob("step_??????")) and _logged_steps(tmp_path / "b") >= kill_at):
        assert killed.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.01)
    os.kill(killed.pid, signal.SIGKILL)
    assert killed.wait(timeout=60) == -signal.SIGKILL
    logged = _logged_steps(tmp_path / "b")
    resumed = _train("--output-dir", str(tmp_path / "b"), *common, "--resume")
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout + resumed.stderr, resumed.stderr[-2000:]
    assert kill_at <= logged < 40, (kill_at, logged)
    assert _losses(tmp_path / "b") == _losses(tmp_path / "a")


def test_accelerate_launch_with_two_cpu_processes(synthetic_set, tmp_path):
    # accelerate's --cpu flag means one process; --multi_gpu on a machine without GPUs starts gloo DDP on the CPU
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    result = _train("--dataset", str(synthetic_set), "--output-dir", str(tmp_path / "ddp"), "train.max_steps=3",
                    *FAST, launcher=launcher, env_extra={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(_losses(tmp_path / "ddp")) == 3 and (tmp_path / "ddp" / "final" / "model.safetensors").is_file()
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints" / "step_000003").glob("rng_rank*")) == [
        "rng_rank0.safetensors", "rng_rank1.safetensors"]


def test_beat_weighted_loss_changes_what_is_minimised(synthetic_set, tmp_path):
    common = ["--dataset", str(synthetic_set), "train.max_steps=2", *FAST]
    plain = _train("--output-dir", str(tmp_path / "plain"), *common)
    weighted = _train("--output-dir", str(tmp_path / "weighted"), *common, "train.beat_alpha=0.05")
    assert plain.returncode == 0 and weighted.returncode == 0, weighted.stderr[-2000:]
    assert _losses(tmp_path / "weighted")[0] != _losses(tmp_path / "plain")[0]  # same batch, other weights


def test_warm_start_begins_from_a_saved_models_weights(synthetic_set, tmp_path):
    common = ["--dataset", str(synthetic_set), *FAST, "guidance.condition_dropout=0"]
    assert _train("--output-dir", str(tmp_path / "first"), *common, "train.max_steps=10", "train.lr=1e-2").returncode == 0
    cold = _train("--output-dir", str(tmp_path / "cold"), *common, "train.max_steps=1")
    warm = _train("--output-dir", str(tmp_path / "warm"), *common, "train.max_steps=1",
                  f"train.init_from={tmp_path / 'first' / 'final'}")
    assert cold.returncode == 0 and warm.returncode == 0, warm.stderr[-2000:]
    assert _losses(tmp_path / "warm")[0] < _losses(tmp_path / "cold")[0] - 0.1  # same batch, trained weights
    missing = _train("--output-dir", str(tmp_path / "bad"), *common, f"train.init_from={tmp_path / 'nothing'}")
    assert missing.returncode != 0 and "no model.safetensors" in missing.stderr and "Traceback" not in missing.stderr


def test_processes_take_disjoint_batches_that_do_not_depend_on_resuming():
    from training.batches import batch_indices

    first = [batch_indices(step, 2, 10, seed=1, rank=0, world=2) for step in range(5)]
    second = [batch_indices(step, 2, 10, seed=1, rank=1, world=2) for step in range(5)]
    assert sorted(sum(first[:5] + second[:5], [])) == sorted(list(range(10)) * 2)  # two epochs, each row twice
    assert all(not set(a) & set(b) for a, b in zip(first[:2], second[:2]))
    assert batch_indices(3, 2, 10, seed=1) == batch_indices(3, 2, 10, seed=1)


@pytest.mark.parametrize("args, message", [
    (["--dataset", "/nonexistent"], "dataset folder not found"),
    (["--dataset", "x", "train.lr=-1"], "train.lr must be > 0"),
    (["--dataset", "x", "fusion.bogus=1"], "unknown config key"),
    (["--dataset", "x", "motion.flow_fps=fast"], "motion.flow_fps must be float"),
])
def test_bad_arguments_give_one_line_errors(args, message):
    result = _train(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
