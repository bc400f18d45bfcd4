"""The one training loop: ``train.py`` (fusion + LoRA) and ``training/pretrain_decoder.py`` (the demo's decoder)
both run their ``TrainTask`` through ``run``, so the step, validation, checkpointing, resume, logging and the
output-folder rules are written once.

    run_dir/
      .train.json          marks the folder as a training run's (what --overwrite may delete)
      metrics.jsonl        one record per step: loss, lr, seconds (+ validation every train.eval_every)
      checkpoints/step_N/  every train.save_every steps, atomically (training/checkpoint.py)
      <task.final_name>/   the shareable result (train.py: final/, pretraining: decoder/)

Reads top to bottom: run folder, optimizer, accelerate, resume, loop (accumulated micro-steps with no_sync,
clipped gradients, periodic validation and checkpoints), final save. Batches come from the task's ``DataLoader``,
indexed by micro-step, so a resumed run repeats the uninterrupted run's losses exactly (CPU and CUDA RNG states
are saved per process).
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Iterable, Protocol

import torch
from torch import nn

from common.errors import UserError
from common.files import OwnedFolder
from model.config import TrainConfig
from training.checkpoint import (list_checkpoints, load_checkpoint, restore_optimizer, restore_rng, rng_state,
                                 save_checkpoint)

METRICS_NAME = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"


class TrainTask(Protocol):
    """What a training job supplies to ``run``."""

    model: nn.Module  # what accelerate prepares; its parameters with requires_grad are optimised
    final_name: str  # the folder under run_dir that ``save_final`` writes

    def batches(self, first: int, last: int, rank: int, world: int) -> Iterable:
        """Micro-batches ``first .. last - 1`` of process ``rank`` (a ``DataLoader``), on the CPU."""

    def loss(self, model: nn.Module, batch) -> torch.Tensor:
        """The loss of one micro-batch already on the device; ``model`` is the prepared (possibly DDP) module."""

    def validate(self, model: nn.Module, accelerator) -> dict:
        """Validation figures (reduced over processes), or {} when the task has none."""

    def trainable_state(self) -> dict[str, torch.Tensor]:
        ...

    def load_trainable_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        ...

    def save_final(self, folder: Path) -> None:
        ...


# ---------------------------------------------------------------------------------------------------- setup


def prepare_run_dir(run_dir: Path, resume: str | None, overwrite: bool, final_name: str) -> None:
    """A fresh run needs an empty (or new) folder; ``--resume`` continues one; ``--overwrite`` deletes what an
    earlier run wrote there (its checkpoints, log and result), nothing else."""
    folder = OwnedFolder(run_dir, "train")
    if resume and folder.read_marker() is None and (run_dir / CHECKPOINTS_DIR).is_dir():
        folder.claim(CHECKPOINTS_DIR, METRICS_NAME, final_name)  # a run folder from before the marker existed
    if not resume and not overwrite and run_dir.is_dir() and any(run_dir.iterdir()):
        raise UserError(f"{run_dir} is not empty: pass --resume to continue that run, --overwrite to start again "
                        "(deletes its checkpoints, log and result), or choose another --output-dir")
    folder.prepare({}, overwrite=overwrite, changed_ok=True)
    folder.claim(CHECKPOINTS_DIR, METRICS_NAME, final_name)


def make_accelerator(train: TrainConfig, placement):
    """accelerate for the resolved placement: gloo DDP on CPU processes, NCCL on GPUs; mixed precision from
    ``--precision`` unless ``train.mixed_precision`` names one."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    mixed = mixed_precision_for(train.mixed_precision, placement)
    if placement.device.type == "cuda":
        torch.cuda.set_device(placement.device)  # a single process on --device cuda:N
    return Accelerator(mixed_precision=mixed, cpu=placement.device.type == "cpu",
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def mixed_precision_for(configured: str, placement, log=print) -> str:
    """accelerate's mixed precision: ``train.mixed_precision`` unless "no", else ``--precision``'s; bf16 on a CPU
    without bf16 instructions becomes fp32 (emulated bf16 made a ``small`` training step about 25x slower on an
    AVX2 CPU), and the run says so."""
    from common.device import cpu_computes_bf16

    mixed = configured if configured != "no" else placement.mixed
    if mixed == "bf16" and placement.device.type == "cpu" and not cpu_computes_bf16():
        log("note: this CPU has no bf16 instructions (bf16 would be emulated, many times slower): training in fp32")
        return "no"
    return mixed


def build_optimizer(model: nn.Module, train: TrainConfig):
    from transformers import get_cosine_schedule_with_warmup

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, train.warmup_steps, train.max_steps)
    return optimizer, scheduler


def resume_step(resume: str | None, run_dir: Path, task: TrainTask, optimizer, scheduler, accelerator) -> int:
    """Restore weights, optimizer, scheduler and RNG from a checkpoint; returns the step to continue from."""
    if resume is None:
        return 0
    folder = Path(resume) if resume != "latest" else (list_checkpoints(run_dir / CHECKPOINTS_DIR) or [None])[-1]
    if folder is None:
        accelerator.print("no checkpoint to resume from: starting at step 0")
        return 0
    if not (folder / "state.json").is_file():
        raise UserError(f"{folder}: not a training checkpoint")
    state = load_checkpoint(folder, accelerator.process_index)
    task.load_trainable_state(state["trainable"], source=str(folder))
    restore_optimizer(optimizer, state["optimizer"], state["param_groups"])
    scheduler.load_state_dict(state["scheduler"])
    if state["rng"] is not None:
        restore_rng(state["rng"], accelerator.device)
    accelerator.print(f"resumed from {folder} at step {state['step']}")
    return state["step"]


# ---------------------------------------------------------------------------------------------------- the loop


def train_step(task: TrainTask, model, micro_batches, grad_accum: int, accelerator, optimizer, scheduler,
               max_grad_norm: float) -> float:
    """One optimizer step over ``grad_accum`` micro-batches (gradients synchronised on the last only)."""
    total = 0.0
    for micro in range(grad_accum):
        batch = next(micro_batches).to(accelerator.device, non_blocking=True)
        sync = micro == grad_accum - 1
        with (accelerator.no_sync(model) if not sync else contextlib.nullcontext()), accelerator.autocast():
            loss = task.loss(model, batch) / grad_accum
        accelerator.backward(loss)
        total += loss.item()
    accelerator.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def run(task: TrainTask, train: TrainConfig, run_dir: Path, placement, resume: str | None = None,
        overwrite: bool = False, config: dict | None = None, accelerator=None, desc: str = "training") -> None:
    """Train ``task`` for ``train.max_steps`` optimizer steps in ``run_dir`` (see the module docstring)."""
    from tqdm.auto import tqdm

    accelerator = accelerator or make_accelerator(train, placement)
    if accelerator.is_main_process:
        prepare_run_dir(run_dir, resume, overwrite, task.final_name)
    accelerator.wait_for_everyone()
    optimizer, scheduler = build_optimizer(task.model, train)
    model, optimizer = accelerator.prepare(task.model, optimizer)
    start = resume_step(resume, run_dir, task, optimizer, scheduler, accelerator)
    log = MetricsLog(run_dir / METRICS_NAME, start, accelerator.is_main_process)
    rank, world = accelerator.process_index, accelerator.num_processes
    micro_batches = iter(task.batches(start * train.grad_accum, train.max_steps * train.grad_accum, rank, world))
    progress = tqdm(range(start, train.max_steps), initial=start, total=train.max_steps, desc=desc,
                    disable=not accelerator.is_local_main_process)
    started = time.perf_counter()
    for step in progress:
        loss = train_step(task, model, micro_batches, train.grad_accum, accelerator, optimizer, scheduler,
                          train.max_grad_norm)
        if not math.isfinite(loss):
            raise RuntimeError(f"loss became {loss} at step {step + 1}; lower train.lr or check the data")
        record = {"step": step + 1, "loss": loss, "lr": scheduler.get_last_lr()[0]}
        last = step + 1 == train.max_steps
        if (step + 1) % train.eval_every == 0 or last:
            record.update(task.validate(model, accelerator))
        progress.set_postfix(loss=f"{loss:.3f}")
        log.write({**record, "seconds": round(time.perf_counter() - started, 2)},
                  show=(step + 1) % train.log_every == 0 or len(record) > 3, printer=progress.write)
        if (step + 1) % train.save_every == 0 or last:
            save(task, run_dir, step + 1, optimizer, scheduler, config or {}, train.keep_checkpoints, accelerator)
    if accelerator.is_main_process:
        task.save_final(run_dir / task.final_name)
        accelerator.print(f"saved {run_dir / task.final_name}")
    accelerator.wait_for_everyone()


def save(task: TrainTask, run_dir: Path, step: int, optimizer, scheduler, config: dict, keep: int,
         accelerator) -> None:
    """A checkpoint with every process's RNG states (gathered to the main process, which writes it)."""
    gathered = {key: accelerator.gather(value[None].to(accelerator.device)).cpu()  # [processes, ...] each
                for key, value in rng_state(accelerator.device).items()}
    states = [{key: value[rank] for key, value in gathered.items()} for rank in range(accelerator.num_processes)]
    if accelerator.is_main_process:
        save_checkpoint(run_dir / CHECKPOINTS_DIR, step, task.trainable_state(), optimizer, scheduler, config, keep,
                        states)
    accelerator.wait_for_everyone()


class MetricsLog:
    """``metrics.jsonl``, one JSON record per step. On resume, records past the checkpoint (written before a
    kill) and a last line cut short are dropped first, so the log matches the uninterrupted run's."""

    def __init__(self, path: Path, last_step: int, writer: bool):
        self.path, self.writer = path, writer
        if writer and path.is_file():
            kept = [line for line in path.read_text().splitlines() if _record_step(line) <= last_step]
            path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict, show: bool = False, printer=print) -> None:
        if not self.writer:
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if show:
            printer(json.dumps(record))


def _record_step(line: str) -> float:
    """The step of one metrics.jsonl line; infinity for a line that is not a whole record."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf
