"""Fine-tune the fusion and LoRA adapters on a clip dataset. One GPU, or several / CPU processes via accelerate.

    python train.py --config configs/small.yaml --dataset DATASET_DIR [--device auto] [--precision auto] [key=value ...]
    accelerate launch train.py --config configs/small.yaml --dataset DATASET_DIR
    python train.py --config ... --resume            # continue from the last checkpoint in train.output_dir

Reads top to bottom: config, device and precision, accelerator, model, cached features (computed first when
missing), the task, the shared loop of ``training/loop.py`` (checkpoints, exact resume, logging), final save.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from common.cli import OneLineParser, add_device_arguments, quiet_libraries, run_cli
from common.errors import UserError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(description="Train the video-to-music fusion + LoRA adapters.")
    parser.add_argument("--config", required=True, help="preset name (tiny, small, medium, demo) or YAML path")
    parser.add_argument("--dataset", default=None, help="dataset folder (overrides train.dataset)")
    parser.add_argument("--output-dir", default=None, help="run folder (overrides train.output_dir)")
    run = parser.add_mutually_exclusive_group()
    run.add_argument("--resume", nargs="?", const="latest", default=None,
                     help="continue from the latest checkpoint in the run folder, or from the given one")
    run.add_argument("--overwrite", action="store_true",
                     help="start again in a run folder that holds an earlier run (its checkpoints, log and result "
                          "are deleted first)")
    parser.add_argument("--push-to-hub", default=None, help="Hub repo id to upload the final model to")
    add_device_arguments(parser, training=True)
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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_cli(lambda: run(args), debug=args.debug)


def run(args: argparse.Namespace) -> None:
    config = build_config(args)
    quiet_libraries()
    from accelerate.utils import set_seed

    from common.device import placement_for
    from model.v2m import VideoToMusic
    from training import loop
    from training.batches import load_split
    from training.video_music import VideoMusicTask, cached_columns_for

    train, dataset = config.train, Path(config.train.dataset)
    load_split(dataset, "train")  # a missing or foreign dataset fails here, before any model is built
    placement = placement_for(args.device, args.precision, training=True)
    accelerator = loop.make_accelerator(train, placement)
    placement = placement_for(accelerator.device, args.precision, training=True)  # each process: its own GPU
    set_seed(train.seed)
    model = VideoToMusic.from_config(config, seed=train.seed, placement=placement).train()
    if train.init_from:  # warm start: go on from a trained model's fusion + LoRA (a resumed run overwrites them)
        from model.checkpoint import WEIGHTS_NAME, read_trainable

        model.load_trainable_state(read_trainable(Path(train.init_from) / WEIGHTS_NAME), source=train.init_from,
                                   keep_fresh_text=True)  # a video-only model may gain a text prompt
        accelerator.print(f"starting from the fusion and LoRA weights of {train.init_from}")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    accelerator.print(f"parameters: {sum(p.numel() for p in model.parameters()):,} total, {trainable:,} trainable; "
                      f"{placement.describe()}")
    with accelerator.main_process_first():  # one process computes missing features, the others then read them
        columns = cached_columns_for(model, config, dataset, log=accelerator.print)
    task = VideoMusicTask(model, config, dataset, columns)
    accelerator.print(f"train: {len(task.source)} clips, validation: {len(task.validation)} clips (cached features)")
    loop.run(task, train, Path(train.output_dir), placement, args.resume, args.overwrite, config.to_dict(), accelerator)
    if train.push_to_hub and accelerator.is_main_process:
        accelerator.print(f"uploaded to {model.push_to_hub(train.push_to_hub)}")


if __name__ == "__main__":
    main()
