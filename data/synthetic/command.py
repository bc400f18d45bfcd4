"""``python -m data.synthetic``: make (or resume) a synthetic clip dataset from the command line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data.schema import SPLITS
from data.splits import DEFAULT_FRACTIONS, parse_fractions
from data.synthetic.build import generate
from data.synthetic.music import resolve_renderer
from data.synthetic.spec import DEFAULT_SOUNDFONT, RENDERERS, SyntheticError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; bad values exit with one argparse-style error line."""
    parser = argparse.ArgumentParser(prog="python -m data.synthetic", description=sys.modules[__package__].__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="dataset folder (resumed if it exists)")
    parser.add_argument("--n", required=True, type=int, help="number of clips")
    parser.add_argument("--seconds", required=True, type=float, help="clip length in seconds")
    parser.add_argument("--seed", required=True, type=int, help="set seed (>= 0); clip k depends only on (seed, k)")
    parser.add_argument("--splits", default=",".join(map(str, DEFAULT_FRACTIONS)),
                        help="train,test,validation fractions (by hashed video id)")
    parser.add_argument("--overwrite", action="store_true", help="delete this tool's earlier output in --out first")
    parser.add_argument("--size", type=int, default=128, help="frame height in pixels (even); width is 16:9")
    parser.add_argument("--fps", type=int, default=24, help="video frame rate")
    parser.add_argument("--renderer", default="auto", choices=RENDERERS,
                        help="music renderer (auto: fluidsynth when installed, else additive)")
    parser.add_argument("--soundfont", default=DEFAULT_SOUNDFONT, help="General MIDI SoundFont for fluidsynth")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering clips in parallel (default 1)")
    args = parser.parse_args(argv)
    _check_args(parser, args)
    return args


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse impossible values the argparse way: usage, one ``error:`` line, exit status 2."""
    problems = [
        (args.n <= 0, f"--n must be a positive number of clips, got {args.n}"),
        (not (0.5 <= args.seconds <= 3600), f"--seconds must be between 0.5 and 3600, got {args.seconds}"),
        (args.seed < 0, f"--seed must be >= 0, got {args.seed}"),
        (args.size < 32 or args.size % 2, f"--size must be an even frame height >= 32, got {args.size}"),
        (not (1 <= args.fps <= 120), f"--fps must be in [1, 120], got {args.fps}"),
        (args.workers < 1, f"--workers must be >= 1, got {args.workers}"),
    ]
    for bad, message in problems:
        if bad:
            parser.error(message)
    try:
        args.splits = parse_fractions(args.splits)
    except ValueError as error:
        parser.error(f"--splits: {error}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        renderer = resolve_renderer(args.renderer, args.soundfont)
        dataset = generate(args.out, args.n, args.seconds, args.seed, args.splits, args.size, args.fps,
                           renderer, args.soundfont, args.overwrite, workers=args.workers)
    except SyntheticError as error:
        print(f"python -m data.synthetic: error: {error}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{name} {len(dataset[name])}" for name in SPLITS)
    print(f"wrote {args.out}: {sizes} clips; music rendered by {renderer}")
    return 0
