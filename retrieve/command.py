"""``python -m retrieve``: rank a folder of the user's own tracks by how well each fits a video.

    python -m retrieve --video VIDEO --library MUSIC_DIR [--top 10] [--model models/demo-retrieval]
                       [--cache DIR] [--json OUT.json] [--device auto] [--precision auto]

Steps: the video's features (the head's own encoders, ``model/extract.py``) -> its step embeddings; every track of
the library -> its step embeddings (cached, ``retrieve/library.py``); every track scored at every offset, ranked by
its best window (``retrieve/ranking.py``). Prints one line per track: score, where in the track to start it so its
beats meet the video's cuts, its length; then the files that were skipped and why.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.cli import OneLineParser, add_device_arguments, quiet_libraries, run_cli
from common.errors import UserError
from common.files import atomic_write_json

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "demo-retrieval"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m retrieve", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    parser.add_argument("--video", required=True, type=Path, help="the video to find music for")
    parser.add_argument("--library", required=True, type=Path, help="folder of audio files (searched recursively)")
    parser.add_argument("--top", type=int, default=10, help="how many tracks to list (default 10; 0: all)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help="video-music embedding folder (default: the shipped demo head)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="where the library's embeddings are cached (default LIBRARY/.v2m-retrieve)")
    parser.add_argument("--json", type=Path, default=None, help="also write the ranking as JSON here")
    add_device_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    if args.top < 0:
        parser.error(f"--top must be >= 0, got {args.top}")
    return args


def check_paths(args: argparse.Namespace) -> None:
    """The user's paths, checked before any model is loaded (one line each)."""
    if not args.video.is_file():
        raise UserError(f"{args.video}: no such video file")
    if not args.library.is_dir():
        raise UserError(f"{args.library}: no such folder (--library takes a folder of audio files)")
    from retrieve.library import AUDIO_SUFFIXES, scan

    if not scan(args.library):
        raise UserError(f"{args.library}: no audio files in it (looked for {', '.join(AUDIO_SUFFIXES)})")


def video_embedding(video: Path, model: Path, head, placement):
    """The video's step embeddings [K, d], from features made by the encoders the head was trained on."""
    import torch

    from model.extract import extract_features
    from model.retrieval_checkpoint import load_encoder_configs
    from model.semantic import build_semantic_encoder
    from model.video_music_embedding import steps_in

    semantic, motion = load_encoder_configs(model)
    with torch.random.fork_rng():
        torch.manual_seed(0)  # as VideoToMusic.from_config builds frozen random-init parts
        encoder = build_semantic_encoder(semantic).to(placement.device, placement.semantic).eval()
    features = extract_features(video, encoder, semantic, motion)
    if steps_in(features.duration) < 1:
        raise UserError(f"{video}: too short ({features.duration:.2f} s; at least 0.1 s of video is needed)")
    return head.embed_features(features)


def run(args: argparse.Namespace) -> None:
    check_paths(args)
    quiet_libraries()
    from common.device import placement_for
    from model.retrieval_checkpoint import head_fingerprint, load_head
    from retrieve.library import CACHE_NAME, LibraryCache, embed_library
    from retrieve.ranking import format_table, rank

    placement = placement_for(args.device, args.precision, training=True)  # fp32 on a CPU, as the features were made
    head = load_head(args.model, placement.device)
    video = video_embedding(args.video, args.model, head, placement).cpu()
    cache = LibraryCache(args.cache or args.library / CACHE_NAME, head_fingerprint(args.model))
    show = (lambda name: print(f"embedding {name}", file=sys.stderr)) if sys.stderr.isatty() else None
    library = embed_library(args.library, head, cache, progress=show)
    if not library.tracks:
        reasons = "; ".join(f"{name}: {why}" for name, why in library.skipped[:3])
        raise UserError(f"{args.library}: none of its {len(library.skipped)} audio files could be read ({reasons})")
    matches = rank(video, library.tracks, args.top or None)
    print(format_table(matches))
    for name, why in library.skipped:
        print(f"skipped {name}: {why}")
    print(f"{len(library.tracks)} tracks ranked ({library.computed} embedded, {library.reused} from the cache), "
          f"{len(library.skipped)} skipped; video {video.shape[0] / 10:.1f} s; 'start at' = where in the track the "
          "video begins")
    if args.json:
        atomic_write_json(args.json, {"video": str(args.video), "library": str(args.library),
                                      "matches": [{"rank": i, "track": m.name, "score": m.score, "offset": m.offset,
                                                   "seconds": m.seconds, "note": m.note}
                                                  for i, m in enumerate(matches, 1)],
                                      "skipped": [{"track": n, "reason": r} for n, r in library.skipped]})


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_cli(lambda: run(args), debug=args.debug, prog="python -m retrieve")
