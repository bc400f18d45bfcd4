"""``python -m data.curate``: the command line.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common.cli import OneLineParser, add_device_arguments, guarded
from common.device import placement_for
from data.curate.dataset import push_to_hub
from data.curate.options import ClipOptions
from data.curate.run import curate, merge, print_summary
from data.sources import parse_shard
from data.splits import DEFAULT_FRACTIONS, parse_fractions


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="dataset folder (resumed if it exists)")
    parser.add_argument("--splits", default=",".join(map(str, DEFAULT_FRACTIONS)), help="train,test,validation fractions")
    parser.add_argument("--seed", type=int, default=0, help="split seed (>= 0)")
    parser.add_argument("--overwrite", action="store_true", help="delete this tool's earlier output in --out first")
    parser.add_argument("--push-to-hub", metavar="REPO", help="also upload the dataset and its media to this Hub dataset repo")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def curate_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m data.curate", description=sys.modules[__package__].__doc__.split("\n\n")[0],
                                     epilog="merge: python -m data.curate merge --out DATASET_DIR PART_DIR ...")
    parser.add_argument("--input", required=True, type=Path, help="folder of videos (searched recursively) or a .csv/.jsonl manifest")
    _common_args(parser)
    add_device_arguments(parser)
    parser.add_argument("--config", default="demo",
                        help="preset name or YAML whose semantic encoder judges static video (default demo: the "
                             "default model's settings, offline; 'small' judges with CLIP ViT-B-32, downloaded once)")
    parser.add_argument("--clip-seconds", type=_positive_float, default=30.0, help="clip length (default 30)")
    parser.add_argument("--windows", action="store_true", help="cut consecutive windows instead of only the first clip")
    parser.add_argument("--max-windows", type=int, default=0, help="at most this many windows per video (0: no limit)")
    parser.add_argument("--max-frame-similarity", type=_positive_float, default=0.7,
                        help="reject clips whose mean pairwise CLIP frame similarity is above this (default 0.7, as VMAs)")
    parser.add_argument("--min-frame-change", type=_positive_float, default=0.01,
                        help="with an untrained image tower (demo, tiny): reject clips whose consecutive sampled "
                             "frames differ by less than this mean fraction of full scale (default 0.01)")
    parser.add_argument("--max-bad-packets", type=int, default=10,
                        help="audio packets the decoder may refuse per clip before it is rejected as truncated "
                             "(default 10; skipped packets become silence and are counted in the record)")
    parser.add_argument("--similarity-fps", type=_positive_float, default=1.0, help="frames per second compared for that test (default 1; at least 4 frames per clip)")
    parser.add_argument("--keep-vocals", action="store_true", help="skip vocal removal (Demucs)")
    parser.add_argument("--demucs-model", default="htdemucs", help="Demucs model for vocal removal (default htdemucs)")
    parser.add_argument("--min-rms-db", type=float, default=-45.0, help="reject music quieter than this RMS level in dBFS (default -45)")
    parser.add_argument("--max-height", type=int, default=360, help="scale clips down to at most this height (default 360; 0 keeps the source size)")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--shard", help="curate only part i of N (i/N, 0-based): run one per machine, then merge")
    parser.add_argument("--allow-outside", action="store_true", help="let a manifest name files outside its folder")
    return parser


def merge_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m data.curate merge", description="join curated parts into one dataset")
    parser.add_argument("parts", nargs="+", type=Path, help="folders written by data.curate --shard")
    _common_args(parser)
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse and check the command line; bad values exit with one argparse-style error line."""
    is_merge = bool(argv) and argv[0] == "merge"
    parser = merge_parser() if is_merge else curate_parser()
    args = parser.parse_args(argv[1:] if is_merge else argv)
    args.command = "merge" if is_merge else "curate"
    try:
        args.splits = parse_fractions(args.splits)
    except ValueError as error:
        parser.error(f"--splits: {error}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if not is_merge:
        _check_curate_args(parser, args)
    return args


def _check_curate_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from model.config import ConfigError, load_config

    problems = [
        (args.clip_seconds > 3600, f"--clip-seconds must be at most 3600, got {args.clip_seconds:g}"),
        (args.workers < 1, f"--workers must be >= 1, got {args.workers}"),
        (args.max_windows < 0, f"--max-windows must be >= 0, got {args.max_windows}"),
        (args.max_bad_packets < 0, f"--max-bad-packets must be >= 0, got {args.max_bad_packets}"),
        (args.min_frame_change >= 1, f"--min-frame-change must be in (0, 1), got {args.min_frame_change:g}"),
        (args.max_frame_similarity > 1, f"--max-frame-similarity must be in (0, 1], got {args.max_frame_similarity:g}"),
        (args.max_height < 0 or args.max_height % 2, f"--max-height must be 0 or an even number of pixels, got {args.max_height}"),
        (args.min_rms_db > 0, f"--min-rms-db is a level in dBFS and must be <= 0, got {args.min_rms_db:g}"),
    ]
    for bad, message in problems:
        if bad:
            parser.error(message)
    try:
        args.shard = parse_shard(args.shard) if args.shard else None
        placement_for(args.device, args.precision)  # an unusable device stops here, before any worker starts
        args.semantic = load_config(args.config).semantic
    except (ValueError, ConfigError) as error:
        parser.error(str(error))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return guarded(lambda: _run(args), prog="python -m data.curate")


def _run(args: argparse.Namespace) -> None:
    if args.command == "merge":
        summary = merge(args.out, args.parts, args.splits, args.seed, args.overwrite)
    else:
        options = ClipOptions(args.semantic, args.clip_seconds, args.windows, args.max_windows,
                              max_frame_similarity=args.max_frame_similarity, min_frame_change=args.min_frame_change,
                              similarity_fps=args.similarity_fps, keep_vocals=args.keep_vocals,
                              demucs_model=args.demucs_model, min_rms_db=args.min_rms_db, max_height=args.max_height,
                              max_bad_packets=args.max_bad_packets,
                              threads=max(1, (os.cpu_count() or 1) // args.workers),
                              device=args.device, precision=args.precision)
        summary = curate(args.input, args.out, options, args.splits, args.seed, args.workers, args.shard,
                         args.overwrite, args.allow_outside, progress=not args.no_progress)
    print_summary(summary)
    if args.push_to_hub:
        push_to_hub(args.out, summary["dataset"], args.push_to_hub)
        print(f"pushed to the Hub dataset repo {args.push_to_hub}")

