"""Resumable training checkpoints with no pickle: tensors in safetensors, everything else in JSON.

A checkpoint folder ``checkpoints/step_000200/`` holds::

    trainable.safetensors   fusion + LoRA weights (same keys as a save_pretrained model.safetensors)
    optimizer.safetensors   every optimizer state tensor, keyed "<param index>.<name>"
    rng_rank<r>.safetensors each process's RNG states: torch's CPU generator, and its CUDA device's when it has one
                            (condition, LoRA and fusion dropout draw from the generator of the device they run on)
    state.json              step, optimizer param groups, scheduler state, config

It is written as ``step_000200.tmp`` and renamed when complete, so a kill mid-write leaves the previous checkpoint
as the latest; the oldest are removed beyond ``keep``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

PREFIX = "step_"


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Split ``optimizer.state_dict()`` into flat tensors and JSON-able param groups."""
    state = optimizer.state_dict()
    tensors = {f"{index}.{name}": value.detach().cpu().contiguous()
               for index, slots in state["state"].items() for name, value in slots.items()}
    return tensors, state["param_groups"]


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """This process's RNG states: ``{"torch": CPU state, "cuda": the state of ``device``'s generator}``."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(root: Path, step: int, trainable: dict[str, torch.Tensor], optimizer, scheduler, config: dict,
                    keep: int, rng_states: list[dict[str, torch.Tensor]]) -> Path:
    """Write checkpoint ``step`` under ``root`` atomically (temp folder + rename); prune to the last ``keep``."""
    final = root / f"{PREFIX}{step:06d}"
    tmp = root / f"{PREFIX}{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable, str(tmp / "trainable.safetensors"))
    tensors, groups = optimizer_tensors(optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    for rank, rng in enumerate(rng_states):
        save_file({k: v.cpu().contiguous() for k, v in rng.items()}, str(tmp / f"rng_rank{rank}.safetensors"))
    state = {"step": step, "param_groups": groups, "scheduler": scheduler.state_dict(), "config": config}
    (tmp / "state.json").write_text(json.dumps(state, indent=1, default=str))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first (``.tmp`` folders from interrupted writes are ignored)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[5:].isdigit())


def load_checkpoint(folder: Path, rank: int) -> dict:
    """Read a checkpoint folder back: {"step", "trainable", "optimizer", "param_groups", "scheduler", "rng"}."""
    state = json.loads((folder / "state.json").read_text())
    rng_file = folder / f"rng_rank{rank}.safetensors"
    return {
        "step": int(state["step"]),
        "trainable": load_file(str(folder / "trainable.safetensors")),
        "optimizer": load_file(str(folder / "optimizer.safetensors")),
        "param_groups": state["param_groups"],
        "scheduler": state["scheduler"],
        "rng": load_file(str(rng_file)) if rng_file.is_file() else None,
    }
