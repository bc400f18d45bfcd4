"""How well does the video-music embedding find a video's music, and where to start it? Retrieval on a test split.

    python tools/retrieval_eval.py --dataset DATASET_DIR --ours HEAD_DIR --no-motion HEAD_DIR --out REPORT_DIR
           [--split test] [--encoders models/demo] [--shifts 0.25,0.5,1,1.5,2] [--tolerance 0.1] [--seed 0]

Recall (as VMAs measures retrieval): every clip's video against the music of all N clips of the split (N = the
whole split, whole clips), R@1 and R@10 = share of videos whose true music ranks first / in the first ten. The same
with short queries, scored as the command scores: a ``--query-seconds`` crop of each video (random start) slid along
every whole music clip, each music ranked by its best offset (more chances for a wrong track to fit). Systems:
``ours`` (the head), ``no_motion`` (the same recipe without the motion stream), ``random`` (a seeded random order).

Offset: the true music shifted by a known amount s — the track is s seconds of another clip's music, then the true
music, then (max shift - s) seconds of a third clip's, so every track has the same length and the same candidate
offsets (0 to max shift, every 0.1 s). The video is searched along the track; the estimate is right when within
``--tolerance`` of s ("exact"), or when it is off by whole beats only ("beat phase": the cuts still land on beats).

Means over clips with 95 % bootstrap intervals (``scoring/stats.py``) and paired differences (ours minus each
other system, per clip). Writes ``REPORT_DIR/report.json`` and ``report.md`` atomically.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import OneLineParser, quiet_libraries, run_cli  # noqa: E402
from common.errors import UserError  # noqa: E402
from common.files import atomic_write_json, atomic_write_text  # noqa: E402

SYSTEMS = ("ours", "no_motion", "random")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(prog="tools/retrieval_eval.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, type=Path)
    parser.add_argument("--ours", required=True, type=Path, help="head folder (training.retrieval_head final/)")
    parser.add_argument("--no-motion", required=True, type=Path, help="the same head trained with --no-motion")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--encoders", default=Path("models/demo"), type=Path,
                        help="model folder whose encoders made the cached features")
    parser.add_argument("--shifts", default="0.25,0.5,1,1.5,2", help="known offsets in seconds")
    parser.add_argument("--tolerance", type=float, default=0.1)
    parser.add_argument("--query-seconds", type=float, default=3.0,
                        help="length of the short video queries scored at their best offset (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        args.shifts = [float(s) for s in args.shifts.split(",")]
    except ValueError:
        parser.error(f"--shifts must be comma-separated seconds, got {args.shifts!r}")
    if min(args.shifts) < 0 or args.tolerance <= 0:
        parser.error("--shifts must be >= 0 and --tolerance > 0")
    return args


# ---------------------------------------------------------------------------------------------------- recall


def true_ranks(sim: torch.Tensor) -> np.ndarray:
    """[N, N] scores (row = video, column = music) -> [N] rank of the diagonal in its row (1 = first)."""
    return (sim > sim.diagonal()[:, None]).sum(dim=1).numpy() + 1


def recall_ranks(head, pairs) -> np.ndarray:
    from model.video_music_embedding import pair_similarity

    steps = min(min(p.music.shape[0] // 4, p.semantic.shape[0]) for p in pairs)
    with torch.no_grad():
        video = head.embed_video(torch.stack([p.semantic[:steps] for p in pairs]),
                                 torch.stack([p.motion[:steps] for p in pairs]))
        music = head.embed_music(torch.stack([p.music[: steps * 4] for p in pairs]))
    return true_ranks(pair_similarity(video, music))


def short_query_ranks(head, pairs, starts: np.ndarray, query_steps: int) -> np.ndarray:
    """As the command scores: a ``query_steps`` crop of each video (from ``starts`` [N]) against every whole music
    clip at every offset, each music scored by its best offset; -> [N] rank of the true music."""
    from model.video_music_embedding import best_window_similarity

    steps = min(min(p.music.shape[0] // 4, p.semantic.shape[0]) for p in pairs)
    with torch.no_grad():
        video = head.embed_video(torch.stack([p.semantic[s:s + query_steps] for p, s in zip(pairs, starts)]),
                                 torch.stack([p.motion[s:s + query_steps] for p, s in zip(pairs, starts)]))
        music = head.embed_music(torch.stack([p.music[: steps * 4] for p in pairs]))  # [N, S, d]
    return true_ranks(best_window_similarity(video, music))


# ---------------------------------------------------------------------------------------------------- offsets


def shifted_track(wavs: list[np.ndarray], i: int, shift: float, longest: float, rate: int) -> np.ndarray:
    """Clip ``i``'s music with ``shift`` s of the next clip's music before it and the rest of ``longest`` after."""
    before = wavs[(i + 1) % len(wavs)][len(wavs[(i + 1) % len(wavs)]) - round(shift * rate):] if shift > 0 else []
    after = wavs[(i + 2) % len(wavs)][: round((longest - shift) * rate)]
    return np.concatenate([np.asarray(before, np.float32), wavs[i], after])


def phase_error(estimate: float, truth: float, beat: float) -> float:
    """Distance of ``estimate - truth`` from the nearest whole number of beats, in seconds."""
    error = estimate - truth
    return abs(error - beat * round(error / beat))


def offset_estimates(heads: dict, pairs, wavs, shifts: list[float], rate: int) -> dict[str, np.ndarray]:
    """Per head, [N, len(shifts)] best offsets (seconds) of each whole video along each shifted track (the music
    frames of each track are computed once for all heads)."""
    from model.music_features import music_features
    from model.video_music_embedding import STEP_RATE, offset_scores

    longest = max(shifts)
    out = {name: np.zeros((len(pairs), len(shifts))) for name in heads}
    with torch.no_grad():
        for i, pair in enumerate(pairs):
            videos = {name: head.embed_video(pair.semantic[None], pair.motion[None])[0] for name, head in heads.items()}
            for j, shift in enumerate(shifts):
                frames = torch.from_numpy(music_features(shifted_track(wavs, i, shift, longest, rate), rate))[None]
                for name, head in heads.items():
                    music = head.embed_music(frames)[0]
                    out[name][i, j] = int(offset_scores(videos[name], music).argmax()) / STEP_RATE
    return out


def offset_hits(estimates: np.ndarray, shifts: list[float], beats: np.ndarray, tolerance: float) -> dict:
    """Per clip (mean over shifts): exact hits and beat-phase hits."""
    truth = np.asarray(shifts)[None, :]
    exact = (np.abs(estimates - truth) <= tolerance + 1e-6).mean(axis=1)
    phase = np.array([[phase_error(e, t, b) <= tolerance + 1e-6 for e, t in zip(row, shifts)]
                      for row, b in zip(estimates, beats)]).mean(axis=1)
    return {"exact": exact, "phase": phase}


# ---------------------------------------------------------------------------------------------------- report


def evaluate(args: argparse.Namespace) -> dict:
    from data.retrieval_pairs import load_pairs
    from media.audio import read_audio
    from model.checkpoint import read_config
    from model.music_features import SAMPLE_RATE
    from model.retrieval_checkpoint import load_head
    from model.video_music_embedding import STEP_RATE
    from scoring.stats import mean_ci
    from training.batches import load_split

    started = time.monotonic()
    config = read_config(args.encoders.resolve(), {})
    pairs = load_pairs(args.dataset, args.split, config)
    if len(pairs) < 10:
        raise UserError(f"{args.dataset}: split {args.split!r} has {len(pairs)} clips; R@10 needs at least 10")
    rows = load_split(args.dataset, args.split)
    wavs = [read_audio(args.dataset / row["music_path"], SAMPLE_RATE)[0] for row in rows]
    beats = np.array([p.beat for p in pairs])
    rng = np.random.default_rng(args.seed)
    heads = {"ours": load_head(args.ours), "no_motion": load_head(args.no_motion)}
    ranks = {name: recall_ranks(head, pairs) for name, head in heads.items()}
    ranks["random"] = np.array([int(np.nonzero(rng.permutation(len(pairs)) == i)[0][0]) + 1 for i in range(len(pairs))])
    query_steps = round(args.query_seconds * STEP_RATE)
    starts = rng.integers(0, min(p.semantic.shape[0] for p in pairs) - query_steps + 1, size=len(pairs))
    short = {name: short_query_ranks(head, pairs, starts, query_steps) for name, head in heads.items()}
    short["random"] = np.array([int(np.nonzero(rng.permutation(len(pairs)) == i)[0][0]) + 1 for i in range(len(pairs))])
    grid = np.arange(0, round(max(args.shifts) * STEP_RATE) + 1) / STEP_RATE  # the candidate offsets
    estimates = offset_estimates(heads, pairs, wavs, args.shifts, SAMPLE_RATE)
    estimates["random"] = rng.choice(grid, size=(len(pairs), len(args.shifts)))
    per_clip = {}
    for name in SYSTEMS:
        hits = offset_hits(estimates[name], args.shifts, beats, args.tolerance)
        per_clip[name] = {"r1": (ranks[name] == 1).astype(float), "r10": (ranks[name] <= 10).astype(float),
                          "short_r1": (short[name] == 1).astype(float), "short_r10": (short[name] <= 10).astype(float),
                          "offset_exact": hits["exact"], "offset_phase": hits["phase"]}
    metrics = list(per_clip["ours"])
    summary = {name: {m: mean_ci(per_clip[name][m]) for m in metrics} for name in SYSTEMS}
    paired = {f"ours-{other}": {m: mean_ci(per_clip["ours"][m] - per_clip[other][m]) for m in metrics}
              for other in ("no_motion", "random")}
    per_shift = {name: {str(s): float((np.abs(estimates[name][:, j] - s) <= args.tolerance + 1e-6).mean())
                        for j, s in enumerate(args.shifts)} for name in SYSTEMS}
    return {"dataset": str(args.dataset), "split": args.split, "n": len(pairs), "candidates": len(pairs),
            "shifts": args.shifts, "tolerance": args.tolerance, "query_seconds": args.query_seconds,
            "offsets_searched": len(grid),
            "heads": {"ours": str(args.ours), "no_motion": str(args.no_motion)}, "summary": summary,
            "paired": paired, "offset_exact_by_shift": per_shift,
            "median_rank": {name: float(np.median(ranks[name])) for name in SYSTEMS},
            "per_clip": {name: {"ids": [p.id for p in pairs], "rank": ranks[name].tolist(),
                                "short_query_rank": short[name].tolist(),
                                "short_query_start": (starts / STEP_RATE).tolist(),
                                "offsets": estimates[name].tolist()} for name in SYSTEMS},
            "seconds": round(time.monotonic() - started, 1)}


def cell(stat: dict, percent: bool = True) -> str:
    scale = 100 if percent else 1
    return f"{scale * stat['mean']:.1f} [{scale * stat['ci_low']:.1f}, {scale * stat['ci_high']:.1f}]"


def markdown(report: dict) -> str:
    n, shifts = report["n"], ", ".join(f"{s:g}" for s in report["shifts"])
    lines = [f"Retrieval on {report['dataset']} ({report['split']}, N = {n} clips; each video against all {n} "
             f"music clips). Offsets: true music shifted by {shifts} s inside a track of the same length, "
             f"{report['offsets_searched']} candidate offsets, tolerance {report['tolerance']:g} s. Percent, mean "
             f"[95 % bootstrap interval] over clips. Short query: a {report['query_seconds']:g} s crop of the video "
             "against every whole music clip, each scored at its best offset (as the command ranks).", "",
             "| system | R@1 | R@10 | R@1 short query | R@10 short query | offset exact | offset beat phase |",
             "|---|---|---|---|---|---|---|"]
    for name in SYSTEMS:
        s = report["summary"][name]
        lines.append(f"| {name} | {cell(s['r1'])} | {cell(s['r10'])} | {cell(s['short_r1'])} | "
                     f"{cell(s['short_r10'])} | {cell(s['offset_exact'])} | {cell(s['offset_phase'])} |")
    lines += ["", "| paired difference | R@1 | R@10 | R@1 short query | R@10 short query | offset exact | "
              "offset beat phase |", "|---|---|---|---|---|---|---|"]
    for name, s in report["paired"].items():
        lines.append(f"| {name} | {cell(s['r1'])} | {cell(s['r10'])} | {cell(s['short_r1'])} | "
                     f"{cell(s['short_r10'])} | {cell(s['offset_exact'])} | {cell(s['offset_phase'])} |")
    lines += ["", "Exact offset hits by shift (s): " + "; ".join(
        f"{name} " + ", ".join(f"{k}: {100 * v:.0f}" for k, v in report["offset_exact_by_shift"][name].items())
        for name in SYSTEMS)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    def job() -> None:
        quiet_libraries()
        report = evaluate(args)
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out / "report.json", report)
        atomic_write_text(args.out / "report.md", markdown(report))
        print(markdown(report))
        print(f"wrote {args.out / 'report.json'} and report.md in {report['seconds']} s")

    run_cli(job, prog="tools/retrieval_eval.py")


if __name__ == "__main__":
    main()
