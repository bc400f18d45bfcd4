"""Fine-tune the fusion and LoRA adapters on a clip dataset. One GPU, or several / CPU processes via accelerate.

    python train.py --config configs/small.yaml --dataset DATASET_DIR [section.key=value ...]
    accelerate launch train.py --config configs/small.yaml --dataset DATASET_DIR
    python train.py --config ... --resume            # continue from the last checkpoint in train.output_dir

Reads top to bottom: config, accelerator, model, data, optimizer, (resume), loop, final save. Batches depend only on
(seed, step, process), and checkpoints hold weights, optimizer, scheduler and RNG state, so a resumed run repeats
the losses of an uninterrupted one.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from pathlib import Path

from cli import UserError, quiet_libraries, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the video-to-music fusion + LoRA adapters.")
    parser.add_argument("--config", required=True, help="preset name (tiny, small, medium, demo) or YAML path")
    parser.add_argument("--dataset", default=None, help="dataset folder (overrides train.dataset)")
    parser.add_argument("--output-dir", default=None, help="run folder (overrides train.output_dir)")
    parser.add_argument("--resume", nargs="?", const="latest", default=None,
                        help="continue from the latest checkpoint in the run folder, or from the given one")
    parser.add_argument("--push-to-hub", default=None, help="Hub repo id to upload the final model to")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("overrides", nargs="*", help="config overrides like train.lr=3e-4 lora.r=8")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace):
    from model.config import load_config

    overrides = list(args.overrides)
    for key, value in (("dataset", args.dataset), ("output_dir", args.output_dir), ("push_to_hub", args.push_to_hub)):
        if value is not None:
            overrides.append(f"train.{key}={json.dumps(value)}")
    config = load_config(args.config, overrides)
    if not config.train.dataset:
        raise UserError("no dataset: pass --dataset DIR (or set train.dataset in the config)")
    return config


def build_optimizer(model, config):
    import torch
    from transformers import get_cosine_schedule_with_warmup

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.train.lr, weight_decay=config.train.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.train.warmup_steps, config.train.max_steps)
    return optimizer, scheduler


def resume_step(args, run_dir: Path, model, optimizer, scheduler, accelerator) -> int:
    """Restore weights, optimizer, scheduler and RNG from a checkpoint; returns the step to continue from."""
    import torch

    from training.checkpoint import list_checkpoints, load_checkpoint, restore_optimizer

    if args.resume is None:
        return 0
    folder = Path(args.resume) if args.resume != "latest" else (list_checkpoints(run_dir / "checkpoints") or [None])[-1]
    if folder is None:
        accelerator.print("no checkpoint to resume from: starting at step 0")
        return 0
    if not (folder / "state.json").is_file():
        raise UserError(f"{folder}: not a training checkpoint")
    state = load_checkpoint(folder, accelerator.process_index)
    accelerator.unwrap_model(model).load_trainable_state(state["trainable"], source=str(folder))
    restore_optimizer(optimizer, state["optimizer"], state["param_groups"])
    scheduler.load_state_dict(state["scheduler"])
    if state["rng"] is not None:
        torch.set_rng_state(state["rng"])
    accelerator.print(f"resumed from {folder} at step {state['step']}")
    return state["step"]


def train_step(model, source, step: int, config, accelerator, optimizer, scheduler) -> float:
    """One optimizer step over ``grad_accum`` micro-batches; returns the mean loss."""
    import torch

    from training.clips import batch_indices, make_batch

    unwrapped, train = accelerator.unwrap_model(model), config.train
    total = 0.0
    for micro in range(train.grad_accum):
        micro_step = step * train.grad_accum + micro
        indices = batch_indices(micro_step, train.batch_size, len(source), train.seed,
                                accelerator.process_index, accelerator.num_processes)
        crops = torch.Generator().manual_seed(train.seed * 7919 + micro_step * 131 + accelerator.process_index)
        batch = make_batch(source, indices, train.clip_seconds, unwrapped, crops)
        sync = micro == train.grad_accum - 1
        with (accelerator.no_sync(model) if not sync else contextlib.nullcontext()), accelerator.autocast():
            weights = batch.step_weights(unwrapped.num_codebooks)
            loss = model(batch.features, batch.codes, batch.lengths, weights) / train.grad_accum
        accelerator.backward(loss)
        total += loss.item()
    accelerator.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], train.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def validation_metrics(model, source, config, accelerator) -> dict:
    """Validation loss, and the sync probe where clips carry event times (the synthetic set).

    Sync probe: codebook-0 cross-entropy at code frames within one frame of a known cut/impact vs at the other
    frames. Hits are louder and rarer, so early on event frames cost more; once the model predicts hits from the
    video, ``sync_event_loss`` falls towards (or below) ``sync_other_loss``.
    """
    import torch

    from model.delay import IGNORE_INDEX
    from model.v2m import codebook_cross_entropy
    from training.clips import make_batch

    if source is None or len(source) == 0:
        return {"val_loss": None}
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.eval()
    losses, event_losses, other_losses = [], [], []
    with torch.no_grad():
        for first in range(0, len(source), config.train.batch_size):
            indices = list(range(first, min(first + config.train.batch_size, len(source))))
            batch = make_batch(source, indices, config.train.clip_seconds, unwrapped, None)
            logits, labels = unwrapped.teacher_forced(batch.features, batch.codes, batch.lengths)
            losses.append(codebook_cross_entropy(logits, labels).item())
            frames = batch.codes.shape[-1]  # codebook 0's label at delayed step t is frame t
            first_codebook = torch.nn.functional.cross_entropy(
                logits[:, 0, :frames].transpose(1, 2).float(), labels[:, 0, :frames].clamp_min(0), reduction="none")
            real = labels[:, 0, :frames] != IGNORE_INDEX
            event_losses.append(first_codebook[real & batch.near_event])
            other_losses.append(first_codebook[real & ~batch.near_event])
    unwrapped.train()
    events, others = torch.cat(event_losses), torch.cat(other_losses)
    return {"val_loss": sum(losses) / len(losses),
            "sync_event_loss": events.mean().item() if len(events) else None,
            "sync_other_loss": others.mean().item() if len(others) else None}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_cli(lambda: run(args), debug=args.debug)


def run(args: argparse.Namespace) -> None:
    config = build_config(args)
    quiet_libraries()
    import torch
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from model.v2m import VideoToMusic
    from training.checkpoint import save_checkpoint
    from training.clips import ClipSource

    train = config.train
    # cpu=True when there is no GPU: accelerate then runs gloo DDP across the processes its launcher started
    accelerator = Accelerator(mixed_precision=train.mixed_precision, cpu=not torch.cuda.is_available(),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    set_seed(train.seed)
    run_dir = Path(train.output_dir)
    model = VideoToMusic.from_config(config, seed=train.seed)
    model.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    accelerator.print(f"parameters: {sum(p.numel() for p in model.parameters()):,} total, {trainable:,} trainable")
    source = ClipSource(train.dataset, "train", model, log=accelerator.print, beat_alpha=train.beat_alpha,
                        beat_delta=train.beat_delta)
    if len(source) == 0:
        raise UserError(f"{train.dataset}: the train split is empty")
    validation = ClipSource(train.dataset, "validation", model, log=accelerator.print)
    optimizer, scheduler = build_optimizer(model, config)
    model, optimizer = accelerator.prepare(model, optimizer)
    start = resume_step(args, run_dir, model, optimizer, scheduler, accelerator)
    log_path = run_dir / "metrics.jsonl"
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        _truncate_jsonl(log_path, start)
    progress = tqdm(range(start, train.max_steps), initial=start, total=train.max_steps, desc="training",
                    disable=not accelerator.is_local_main_process)
    started = time.perf_counter()
    for step in progress:
        loss = train_step(model, source, step, config, accelerator, optimizer, scheduler)
        record = {"step": step + 1, "loss": loss, "lr": scheduler.get_last_lr()[0]}
        if (step + 1) % train.eval_every == 0 or step + 1 == train.max_steps:
            record.update(validation_metrics(model, validation, config, accelerator))
        if not math.isfinite(loss):
            raise RuntimeError(f"loss became {loss} at step {step + 1}; lower train.lr or check the data")
        progress.set_postfix(loss=f"{loss:.3f}")
        if accelerator.is_main_process:
            _append_jsonl(log_path, {**record, "seconds": round(time.perf_counter() - started, 2)})
            if (step + 1) % train.log_every == 0 or "val_loss" in record:
                progress.write(json.dumps(record))
        if (step + 1) % train.save_every == 0 or step + 1 == train.max_steps:
            rng = accelerator.gather(torch.get_rng_state()[None].to(accelerator.device)).cpu()
            if accelerator.is_main_process:
                save_checkpoint(run_dir / "checkpoints", step + 1, accelerator.unwrap_model(model).trainable_state_dict(),
                                optimizer, scheduler, config.to_dict(), train.keep_checkpoints, list(rng))
        accelerator.wait_for_everyone()
    finish(accelerator, model, run_dir, train)


def finish(accelerator, model, run_dir: Path, train) -> None:
    """Save the final model as a shareable folder (and upload it when asked)."""
    if not accelerator.is_main_process:
        return
    final = accelerator.unwrap_model(model)
    final.save_pretrained(run_dir / "final")
    accelerator.print(f"saved {run_dir / 'final'}")
    if train.push_to_hub:
        accelerator.print(f"uploaded to {final.push_to_hub(train.push_to_hub)}")


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop log records past ``last_step`` (written before a kill, after the checkpoint we resume from), and a
    last line cut short by the kill."""
    if path.is_file():
        kept = [line for line in path.read_text().splitlines() if _record_step(line) <= last_step]
        path.write_text("".join(line + "\n" for line in kept))


def _record_step(line: str) -> float:
    """The step of one metrics.jsonl line; infinity for a line that is not a whole record."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf


def _append_jsonl(path: Path, record: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
