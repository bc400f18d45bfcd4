"""How much sync can this codec carry? The reference music scored as is and after a round trip through the model's
codec (encode -> decode), with the same figures as ``tools/event_hits.py``.

    python tools/codec_ceiling.py --dataset DATASET_DIR [--split test] [--model models/demo] [--limit N] [--json OUT]

Why: generated music is decoded by the codec, so no model can beat what the codec does to a perfect answer. With
the demo's spectral codec (Griffin-Lim phase) the round trip alone more than doubles librosa's onset count (smeared
transients read as several onsets), which is where the generated music's "too many onsets" mostly comes from, and it
caps the event-hit lift well below the reference's 1.0 (issue 19's closing note has the figures). Compare a system's
figures with the round trip's, not only with the reference's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import OneLineParser, quiet_libraries, run_cli  # noqa: E402
from common.errors import UserError  # noqa: E402

FIGURES = ("event", "lift", "grid_lift", "tempo_match", "onsets_per_s")


def split_rows(dataset_dir: Path, split: str, limit: int | None = None) -> list[dict]:
    """The rows of one split, first ``limit`` (``data.schema.read_split``: held-out sets too, which training refuses
    and this tool is for)."""
    from data.schema import read_split

    try:
        return read_split(dataset_dir, split, limit)
    except ValueError as error:
        raise UserError(str(error).splitlines()[0]) from None


def round_trip(codec) -> Callable[[np.ndarray], np.ndarray]:
    """mono wav [S] at the codec's rate -> the same length decoded from its codes (float32 [S])."""
    import torch

    def apply(wav: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            codes = codec.encode(torch.as_tensor(wav, dtype=torch.float32)[None, None])
            out = codec.decode(codes)[0, 0].float().cpu().numpy()
        out = out[: len(wav)]
        return np.pad(out, (0, len(wav) - len(out)))

    return apply


def clip_figures(wav: np.ndarray, sample_rate: int, row: dict, tolerance: float) -> dict:
    """``tools/event_hits.clip_scores`` of one clip, plus its lifts as numbers of their own."""
    from tools.event_hits import clip_scores

    beats = np.asarray(row["beat_times"], float) if row.get("beat_times") else None
    scores = clip_scores(wav, sample_rate, np.asarray(row["event_times"], float), 60.0 / float(row["tempo"]),
                         len(wav) / sample_rate, tolerance, beats)
    scores["lift"] = scores["event"] - scores["control"]
    if "grid" in scores:
        scores["grid_lift"] = scores["grid"] - scores["grid_control"]
    return scores


def ceiling(dataset: Path, rows: list[dict], sample_rate: int, transform: Callable[[np.ndarray], np.ndarray],
            tolerance: float = 0.1, progress: bool = True) -> dict:
    """``{"reference": {figure: mean_ci}, "round_trip": {...}, "paired": {figure: round_trip - reference}}``."""
    from tqdm import tqdm

    from media.audio import read_audio
    from scoring.stats import mean_ci

    per_clip = {"reference": [], "round_trip": []}
    for row in tqdm(rows, desc="round trips", unit="clip", disable=not progress):
        if not row.get("event_times"):
            continue
        wav = read_audio(dataset / row["music_path"], sample_rate)[0]
        wav = wav.mean(axis=0) if wav.ndim > 1 else wav
        per_clip["reference"].append(clip_figures(wav, sample_rate, row, tolerance))
        per_clip["round_trip"].append(clip_figures(transform(wav), sample_rate, row, tolerance))
    if not per_clip["reference"]:
        raise UserError(f"{dataset}: no clip with known event times (make the set with data.synthetic or "
                        "data.heldout_events)")
    names = [f for f in FIGURES if f in per_clip["reference"][0]]
    out = {kind: {f: mean_ci([c[f] for c in clips]) for f in names} for kind, clips in per_clip.items()}
    out["paired"] = {f: mean_ci([b[f] - a[f] for a, b in zip(per_clip["reference"], per_clip["round_trip"])])
                     for f in names}
    return out


def format_table(scores: dict) -> str:
    def cell(d: dict) -> str:
        return f"{d['mean']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"

    names = list(scores["reference"])
    lines = ["| music | " + " | ".join(names) + " | clips |", "|---" * (len(names) + 2) + "|"]
    for kind, label in (("reference", "reference"), ("round_trip", "through the codec"),
                        ("paired", "codec − reference (paired)")):
        lines.append(f"| {label} | " + " | ".join(cell(scores[kind][n]) for n in names)
                     + f" | {scores[kind][names[0]]['n']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(prog="tools/codec_ceiling.py", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, type=Path, help="a set with event times (data.synthetic, ...)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", default="models/demo", help="the model whose codec is measured")
    parser.add_argument("--limit", type=int, help="only the first N clips of the split")
    parser.add_argument("--tolerance", type=float, default=0.1, help="seconds (default 0.1, as event_hits)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    quiet_libraries()
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")

    def job() -> None:
        from model.v2m import VideoToMusic

        rows = split_rows(args.dataset, args.split, args.limit)
        model = VideoToMusic.from_pretrained(args.model, device="cpu")
        scores = ceiling(args.dataset, rows, model.sample_rate, round_trip(model.codec), args.tolerance)
        print(format_table(scores))
        if args.json:
            from common.files import atomic_write_json

            atomic_write_json(args.json, scores, indent=1)

    run_cli(job, prog=parser.prog)


if __name__ == "__main__":
    main()
