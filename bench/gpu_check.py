"""One command that proves the project on a GPU, with no download: ``python -m bench.gpu_check [--out check.json]``.

What it runs (each section is skipped with its reason when a package or the GPU is missing, and a failing
section is reported without stopping the others; everything ends up in one JSON):

1. environment   torch / CUDA / the GPU, and which of the project's packages are importable;
2. cuda_tests    ``pytest tests/test_cuda.py`` (the device paths on the real GPU in bf16, 4-bit and 8-bit);
3. features      a few synthetic clips made and cached by ``data.features`` on the GPU: clips per minute;
4. training      30 QLoRA steps (4-bit base, bf16) at the ``small`` preset's real sizes with random weights, with
                 validation and a checkpoint at step 15, then a resume from that checkpoint that must repeat the
                 uninterrupted losses exactly; peak GPU memory of one step at small and medium size (batch 1 x 10 s);
5. inference     ``infer.py`` on the bundled example at small size in bf16 and in 4-bit: seconds per 30 s of music.

Random weights at real sizes (``model/sizes.py``) have the compute and memory of the released models; a 4-bit base
is quantized by bitsandbytes while loading a checkpoint, so the random decoder is first saved to a temporary folder.
``--device cpu --quick`` runs the same sections at the tiny preset on a CPU (the test suite does, to keep this
script working where there is no GPU).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("transformers", "peft", "accelerate", "bitsandbytes", "open_clip", "av", "cv2", "librosa", "soundfile",
            "datasets", "safetensors", "pretty_midi", "soxr", "pytest")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="where the JSON goes")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny preset, few steps: check the script itself")
    parser.add_argument("--steps", type=int, default=30, help="QLoRA training steps (default 30)")
    parser.add_argument("--skip", default="", help="sections to skip, comma-separated")
    return parser.parse_args(argv)


def missing_packages() -> list[str]:
    missing = []
    for name in PACKAGES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - any failure to import means: not usable here
            missing.append(name)
    return missing


def environment(device: str) -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
            "python": sys.version.split()[0], "missing_packages": missing_packages(),
            "ffmpeg_command": shutil.which("ffmpeg") is not None}
    if torch.cuda.is_available() and device.startswith("cuda"):
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        info.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                    memory_gib=round(props.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported())
    for name in ("transformers", "peft", "accelerate", "bitsandbytes"):
        with contextlib.suppress(Exception):
            info[f"{name}_version"] = importlib.import_module(name).__version__
    return info


# ---------------------------------------------------------------------------------------------------- helpers


def needs(*packages: str) -> str | None:
    """A skip reason when one of ``packages`` is missing, else None."""
    gone = [p for p in packages if p in missing_packages()]
    return f"missing package(s): {', '.join(gone)}" if gone else None


def run_section(name: str, results: dict, skip: set, reason: str | None, job) -> None:
    """Run one section into ``results[name]``; the JSON on disk is rewritten after each one (``results["_out"]``),
    so a check stopped by a time limit still leaves what it measured."""
    try:
        _run_section(name, results, skip, reason, job)
    finally:
        if "_out" in results:
            from common.files import atomic_write_json

            atomic_write_json(results["_out"], {k: v for k, v in results.items() if k != "_out"})


def _run_section(name: str, results: dict, skip: set, reason: str | None, job) -> None:
    if name in skip:
        results[name] = {"status": "skipped", "reason": "--skip"}
        return
    if reason:
        results[name] = {"status": "skipped", "reason": reason}
        return
    started = time.perf_counter()
    try:
        figures = job()
        results[name] = {"status": "ok", **figures}
    except Exception as error:  # noqa: BLE001 - one section failing must not hide the others
        results[name] = {"status": "failed", "error": f"{type(error).__name__}: {str(error)[:3000]}",
                         "traceback": traceback.format_exc()[-2000:]}
    results[name]["seconds"] = round(time.perf_counter() - started, 1)
    print(f"[gpu_check] {name}: {results[name]['status']} ({results[name]['seconds']} s)", flush=True)


def sized_config(quick: bool, preset: str = "small"):
    """The preset at its real sizes with random weights (``tiny`` with --quick)."""
    from model.config import load_config
    from model.sizes import with_random_weights

    if not quick:
        return with_random_weights(load_config(preset))
    config = load_config("tiny")
    # bitsandbytes' CPU 4-bit inference repacks weights in blocks of 64 inputs and fails on narrower layers
    sizes = config.decoder.random_init
    sizes["decoder"] = {**sizes["decoder"], "hidden_size": 64, "ffn_dim": 128}
    return config


def saved_base(config, folder: Path):
    """A copy of ``config`` whose decoder is a saved random checkpoint (so bitsandbytes can quantize it on load)."""
    import copy

    from model.decoder import random_musicgen

    random_musicgen(config.decoder.random_init).save_pretrained(folder)
    config = copy.deepcopy(config)
    config.decoder.base, config.decoder.random_init = str(folder), None
    return config


def write_config(config, path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(config.to_dict()))
    return path


def command(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # keep the caller's path
    env = {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def checked(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if result.returncode != 0:
        raise RuntimeError(f"exit {result.returncode}: {(result.stderr or result.stdout).strip()[-600:]}")
    return result


# ---------------------------------------------------------------------------------------------------- sections


def cuda_tests() -> dict:
    """``tests/test_cuda.py`` on the GPU; on failure the error names each failed test and its reason (``-rfE``)."""
    result = command("-m", "pytest", "-q", "tests/test_cuda.py", "-rfEs", "--tb=line", timeout=600)
    lines = result.stdout.strip().splitlines()
    verdicts = [line for line in lines if line.startswith(("FAILED", "ERROR", "SKIPPED"))]
    if result.returncode != 0:  # failures, or tests that could not even be collected (exit 2-4)
        detail = verdicts + lines[-1:] if verdicts else (lines or result.stderr.strip().splitlines())[-15:]
        raise RuntimeError(f"pytest exit {result.returncode}: {' | '.join(detail)}")
    return {"exit": result.returncode, "summary": lines[-1] if lines else "", "skipped": verdicts}


def synthetic_set(work: Path, clips: int, seconds: float) -> Path:
    from data import synthetic

    out = work / "clips"
    # no test split: training and validation clips (assigned by hashing the ids; seed 6 gives both 4 and 6 clips some)
    synthetic.generate(out, n=clips, seed=6, fractions=(0.5, 0.0, 0.5), seconds=seconds, height=96, fps=24,
                       renderer="additive", progress=False)
    return out


def features(work: Path, config_path: Path, dataset: Path, device: str, clips: int) -> dict:
    started = time.perf_counter()
    checked(command("-m", "data.features", "--dataset", str(dataset), "--config", str(config_path), "--device", device,
                    "--precision", "auto", "--no-progress"))
    seconds = time.perf_counter() - started
    return {"clips": clips, "seconds_with_model_load": round(seconds, 1), "clips_per_minute": round(clips / seconds * 60, 1)}


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def training(work: Path, config_path: Path, dataset: Path, device: str, steps: int) -> dict:
    common = ["train.py", "--config", str(config_path), "--dataset", str(dataset), "--device", device,
              f"train.max_steps={steps}", f"train.save_every={steps // 2}", f"train.eval_every={steps}",
              "train.batch_size=1", "train.clip_seconds=4.0", "train.log_every=1000", "train.warmup_steps=2"]
    started = time.perf_counter()
    checked(command(*common, "--output-dir", str(work / "run_a"), timeout=900))
    seconds = time.perf_counter() - started
    first = losses(work / "run_a")
    # the same run again, stopped after the half-way checkpoint, then resumed from it
    checked(command(*common, "--output-dir", str(work / "run_b"), timeout=900))
    checkpoints = sorted((work / "run_b" / "checkpoints").iterdir())
    shutil.rmtree(checkpoints[-1])
    resumed = checked(command(*common, "--output-dir", str(work / "run_b"), "--resume", timeout=900))
    again = losses(work / "run_b")
    records = [json.loads(line) for line in (work / "run_a" / "metrics.jsonl").read_text().splitlines()]
    if records[-1].get("val_loss") is None:
        raise RuntimeError("validation did not run (no validation clips?)")
    return {"steps": steps, "seconds": round(seconds, 1), "first_loss": first[0], "last_loss": first[-1],
            "val_loss": records[-1].get("val_loss"), "resumed": "resumed from" in resumed.stdout + resumed.stderr,
            "exact_resume": again == first, "max_loss_difference": max(abs(a - b) for a, b in zip(first, again))}


def step_memory(config, device: str, seconds: float = 10.0) -> dict:
    """Peak GPU memory of one QLoRA training step (4-bit base, bf16), batch 1 x ``seconds``."""
    import torch

    from common.device import placement_for
    from model.features import VideoFeatures
    from model.v2m import VideoToMusic
    from training.loss import codebook_cross_entropy

    placement = placement_for(device, "auto", training=True)
    model = VideoToMusic.from_config(config, placement=placement).train()
    frames = round(seconds * model.frame_rate)
    clip = VideoFeatures(torch.randn(int(2 * seconds), model.semantic_encoder.dim), torch.arange(int(2 * seconds)) / 2,
                         torch.randn(int(10 * seconds) - 1, config.motion.feature_dim),
                         torch.arange(1, int(10 * seconds)) / 10, seconds)
    codes = torch.randint(0, model.start_token, (1, model.num_codebooks, frames))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    cuda = placement.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(placement.device)
    started = time.perf_counter()
    with torch.autocast(placement.device.type, dtype=torch.bfloat16, enabled=cuda):
        loss = codebook_cross_entropy(*model(model.collate([clip]), codes))
    loss.backward()
    optimizer.step()
    if cuda:
        torch.cuda.synchronize()
    figures = {"step_seconds": round(time.perf_counter() - started, 3), "loss": float(loss)}
    if cuda:
        figures["peak_gib"] = round(torch.cuda.max_memory_allocated(placement.device) / 2**30, 2)
    del model, optimizer
    if cuda:
        torch.cuda.empty_cache()
    return figures


def inference(work: Path, config_path: Path, precision: str, device: str, seconds: float) -> dict:
    out = work / f"example_{precision}_{config_path.stem}.mp4"
    started = time.perf_counter()
    checked(command("infer.py", "--video", str(ROOT / "examples" / "example.mp4"), "--out", str(out), "--config",
                    str(config_path), "--device", device, "--precision", precision, "--max-seconds", str(seconds)))
    elapsed = time.perf_counter() - started
    return {"music_seconds": seconds, "seconds_with_model_load": round(elapsed, 1),
            "seconds_per_30s_of_music": round(elapsed / seconds * 30, 1)}


# ---------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    skip = {s for s in args.skip.split(",") if s}
    results: dict = {"command": "python -m bench.gpu_check " + " ".join(argv if argv is not None else sys.argv[1:])}
    results["environment"] = environment(args.device)
    results["_out"] = args.out
    no_gpu = None if args.device == "cpu" or torch.cuda.is_available() else "no CUDA GPU visible to PyTorch"
    print(f"[gpu_check] {json.dumps(results['environment'])}", flush=True)
    steps = 4 if args.quick else args.steps
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(tmp)
        run_section("cuda_tests", results, skip | ({"cuda_tests"} if args.quick else set()), no_gpu or needs("pytest"),
                    cuda_tests)
        base_reason = no_gpu or needs("transformers", "peft", "open_clip", "av", "cv2", "datasets", "librosa")
        quant_reason = base_reason or (None if args.device == "cpu" else needs("bitsandbytes"))
        state: dict = {}

        def prepare() -> dict:
            config = sized_config(args.quick)
            state["bf16"] = write_config(config, work / "bf16.yaml")
            quantized = saved_base(config, work / "base")
            quantized.decoder.quantization = "4bit"
            quantized.decoder.gradient_checkpointing = not args.quick
            state["4bit"] = write_config(quantized, work / "4bit.yaml")
            state["dataset"] = synthetic_set(work, 4 if args.quick else 6, 6.0)
            return {"preset": "tiny" if args.quick else "small (random weights, real sizes)"}

        run_section("prepare", results, set(), base_reason, prepare)
        ready = None if "4bit" in state else "preparation failed or skipped"
        run_section("features", results, skip, ready or base_reason,
                    lambda: features(work, state["4bit"], state["dataset"], args.device, 6 if not args.quick else 4))
        run_section("training", results, skip, ready or quant_reason,
                    lambda: training(work, state["4bit"], state["dataset"], args.device, steps))
        for size in (["small", "medium"] if not args.quick else ["tiny"]):
            def memory(size=size) -> dict:
                config = sized_config(args.quick, size if size != "tiny" else "small")
                if not args.quick:
                    config = saved_base(config, work / f"base_{size}")
                    config.decoder.quantization, config.decoder.gradient_checkpointing = "4bit", True
                return step_memory(config, args.device)
            run_section(f"qlora_step_{size}", results, skip, ready or quant_reason, memory)
        seconds = 2.0 if args.quick else 10.0
        run_section("inference_bf16", results, skip, ready or base_reason,
                    lambda: inference(work, state["bf16"], "fp32" if args.device == "cpu" else "bf16", args.device,
                                      seconds))
        run_section("inference_4bit", results, skip, ready or quant_reason,
                    lambda: inference(work, state["4bit"], "fp32" if args.device == "cpu" else "auto", args.device,
                                      seconds))
    goal = results.get("qlora_step_medium", {}).get("peak_gib")
    if goal is not None:
        results["medium_qlora_step_under_8_gib"] = goal <= 8.0
    results.pop("_out")
    from common.files import atomic_write_json

    atomic_write_json(args.out, results)
    print(json.dumps({k: v for k, v in results.items() if k != "environment"}, indent=2, default=str)[:6000])
    return results


if __name__ == "__main__":
    main()
