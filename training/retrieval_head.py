"""Train the video-music embedding head (``model/video_music_embedding.py``) on a clip dataset's cached features.

    python -m training.retrieval_head --dataset DATASET_DIR --encoders models/demo --output-dir RUN_DIR \
        [--no-motion] [--steps 1200] [--batch-size 48] [--lr 2e-3] [--crop-seconds 6] [--min-crop-seconds 2]
        [--seed 0]
        [--resume | --overwrite]

Runs through the shared loop of ``training/loop.py`` (checkpoints, exact resume, ``metrics.jsonl``, folder rules).
Each batch's video crops are 2-6 s long (one length per batch). Every ``--eval-every`` steps it scores the
validation split: R@1 of the true music among all validation clips (whole clips), the share of longest-length
video crops whose best offset in their own music is the true one (within 0.1 s), and R@1 of 3 s crops with every
music scored at its best offset (as the command ranks). It keeps the weights with the best sum of the three
(after ``--resume``, the best since the resume); ``RUN_DIR/final/`` is that head, in the folder format of
``model/retrieval_checkpoint.py``. ``--no-motion`` trains the same head without the motion stream (the ablation).
The defaults are the recipe of ``models/demo-retrieval``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from common.cli import OneLineParser, add_device_arguments, quiet_libraries, run_cli
from common.errors import UserError
from data.retrieval_pairs import ClipPair
from training.contrastive import CropBatch, contrastive_loss, make_crops

VALIDATION_OFFSET_STEPS = 10  # validation crops start 1 s into the clip
SHORT_QUERY_STEPS = 30  # 3 s queries for the best-offset recall


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m training.retrieval_head", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, type=Path, help="clip dataset with cached features")
    parser.add_argument("--encoders", default="models/demo", type=Path,
                        help="model folder whose video encoders made the cached features (default models/demo)")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--no-motion", action="store_true", help="the ablation: leave the motion stream out")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--crop-seconds", type=float, default=6.0, help="longest video crop (default 6)")
    parser.add_argument("--min-crop-seconds", type=float, default=None,
                        help="shortest video crop; each batch draws its length in between (default 2, or "
                             "--crop-seconds when that is shorter; equal to it: fixed-length crops)")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    run = parser.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_const", const="latest", default=None)
    run.add_argument("--overwrite", action="store_true")
    add_device_arguments(parser, training=True)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    if args.min_crop_seconds is None:
        args.min_crop_seconds = min(2.0, args.crop_seconds)
    if args.steps < 1 or args.batch_size < 2 or args.eval_every < 1 or not 1.0 <= args.crop_seconds <= 7.0 \
            or not 1.0 <= args.min_crop_seconds <= args.crop_seconds:
        parser.error("need --steps >= 1, --batch-size >= 2, --eval-every >= 1, 1 <= --crop-seconds <= 7 and "
                     "1 <= --min-crop-seconds <= --crop-seconds")
    return args


class RetrievalTask:
    """The ``TrainTask`` of ``training/loop.py`` for the head; keeps the best-on-validation weights."""

    final_name = "final"

    def __init__(self, head, train_pairs: list[ClipPair], val_pairs: list[ClipPair], batch_size: int,
                 crop_steps: tuple[int, int], seed: int, save_final_head):
        self.model, self.train_pairs, self.val_pairs = head, train_pairs, val_pairs
        self.batch_size, self.crop_steps, self.seed = batch_size, crop_steps, seed  # crop_steps: (shortest, longest)
        self.save_final_head = save_final_head  # folder -> None, writes the head format
        self.best: tuple[float, dict[str, torch.Tensor]] | None = None

    def batches(self, first: int, last: int, rank: int, world: int):
        from training.batches import batch_indices

        for step in range(first, last):
            rng = np.random.default_rng([self.seed, step, rank])
            indices = batch_indices(step, self.batch_size, len(self.train_pairs), self.seed, rank, world)
            length = int(rng.integers(self.crop_steps[0], self.crop_steps[1] + 1))
            yield make_crops([self.train_pairs[i] for i in indices], length, rng)

    def loss(self, model, batch: CropBatch) -> torch.Tensor:
        return contrastive_loss(model, batch)[0]

    @torch.no_grad()
    def validate(self, model, accelerator) -> dict:
        if not self.val_pairs:
            return {}
        model.eval()
        figures = validation_figures(self.model, self.val_pairs, self.crop_steps[1])
        model.train()
        score = figures["val_r1"] + figures["val_offset"] + figures["val_short_r1"]
        if self.best is None or score > self.best[0]:
            self.best = (score, {k: v.detach().clone() for k, v in self.trainable_state().items()})
        return figures

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().float().cpu().contiguous() for k, v in self.model.state_dict().items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        self.model.load_state_dict(state)

    def save_final(self, folder: Path) -> None:
        if self.best is not None:
            self.model.load_state_dict(self.best[1])
        self.save_final_head(folder)


def validation_figures(head, pairs: list[ClipPair], crop_steps: int) -> dict:
    """R@1 among all ``pairs`` (whole clips); the share of ``crop_steps`` crops placed at their true offset
    (+-1 step); R@1 of 3 s crops, every music scored at its best offset (as the command ranks)."""
    from model.video_music_embedding import best_window_similarity, offset_scores, pair_similarity

    steps = min(min(p.music.shape[0] // 4, p.semantic.shape[0]) for p in pairs)
    video = head.embed_video(torch.stack([p.semantic[:steps] for p in pairs]),
                             torch.stack([p.motion[:steps] for p in pairs]))
    music = head.embed_music(torch.stack([p.music[: steps * 4] for p in pairs]))
    sim = pair_similarity(video, music)
    r1 = (sim.argmax(dim=1) == torch.arange(len(pairs))).float().mean().item()
    first, last = VALIDATION_OFFSET_STEPS, VALIDATION_OFFSET_STEPS + crop_steps
    crops = head.embed_video(torch.stack([p.semantic[first:last] for p in pairs]),
                             torch.stack([p.motion[first:last] for p in pairs]))
    found = torch.stack([offset_scores(crops[i], music[i]).argmax() for i in range(len(pairs))])
    offset = ((found - first).abs() <= 1).float().mean().item()
    short = head.embed_video(torch.stack([p.semantic[first:first + SHORT_QUERY_STEPS] for p in pairs]),
                             torch.stack([p.motion[first:first + SHORT_QUERY_STEPS] for p in pairs]))
    short_sim = best_window_similarity(short, music)
    short_r1 = (short_sim.argmax(dim=1) == torch.arange(len(pairs))).float().mean().item()
    return {"val_r1": r1, "val_offset": offset, "val_short_r1": short_r1, "scale": head.logit_scale.exp().item()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_cli(lambda: run(args), debug=args.debug)


def run(args: argparse.Namespace) -> None:
    quiet_libraries()
    from common.device import placement_for
    from data.retrieval_pairs import load_pairs
    from model.checkpoint import read_config
    from model.config import TrainConfig
    from model.retrieval_checkpoint import save_head
    from model.video_music_embedding import EmbeddingConfig, VideoMusicEmbedding, steps_in
    from training import loop

    if not (args.encoders / "config.json").is_file():
        raise UserError(f"{args.encoders}: not a model folder (no config.json)")
    config = read_config(args.encoders.resolve(), {})
    train_pairs = load_pairs(args.dataset, "train", config)
    val_pairs = load_pairs(args.dataset, "validation", config)
    if len(train_pairs) < args.batch_size:
        raise UserError(f"{args.dataset}: {len(train_pairs)} training clips, fewer than --batch-size {args.batch_size}")
    torch.manual_seed(args.seed)
    embedding = EmbeddingConfig(semantic_dim=train_pairs[0].semantic.shape[1], motion_dim=config.motion.feature_dim,
                                use_motion=not args.no_motion)
    head = VideoMusicEmbedding(embedding)
    train = TrainConfig(dataset=str(args.dataset), output_dir=str(args.output_dir), seed=args.seed,
                        batch_size=args.batch_size, lr=args.lr, warmup_steps=min(100, args.steps // 10),
                        max_steps=args.steps, clip_seconds=args.crop_seconds, eval_every=args.eval_every,
                        save_every=args.eval_every, log_every=args.eval_every, pin_memory=False)
    record = {"dataset": str(args.dataset), "train_clips": len(train_pairs), "validation_clips": len(val_pairs),
              "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "crop_seconds": args.crop_seconds,
              "min_crop_seconds": args.min_crop_seconds,
              "seed": args.seed, "use_motion": not args.no_motion}
    crops = (steps_in(args.min_crop_seconds), steps_in(args.crop_seconds))
    task = RetrievalTask(head, train_pairs, val_pairs, args.batch_size, crops, args.seed,
                         lambda folder: save_head(head, folder, config.semantic, config.motion, record))
    placement = placement_for(args.device, args.precision, training=True)
    loop.run(task, train, args.output_dir, placement, args.resume, args.overwrite, record, desc="retrieval head")


if __name__ == "__main__":
    main()
