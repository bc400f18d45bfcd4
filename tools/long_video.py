"""Checks for long-video generation (``model.long_form``): continuity across window joins, time and peak memory.

    python tools/long_video.py continuity MUSIC.wav [--window-seconds 30] [--overlap-seconds 5] [--span 5]
    python tools/long_video.py continuity MUSIC.wav --joins 3.0,7.25 [--span 2.5]   # e.g. a regenerated range
    python tools/long_video.py cost VIDEO.mp4 [infer.py arguments ...]

Continuity compares the ``span`` seconds (5) before and after each join (where a window's newly sampled music
starts) with two such stretches around a point inside a window, by level difference (RMS, dB), chroma cosine
similarity and tempo difference (librosa). ``--joins`` gives the join times instead (``infer.py --regenerate``
prints its two); the inside points are then the middles of the stretches between them. With an untrained model the
music is noise and the numbers mean little; with a trained one, joins should score like the inside of a window.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a plain script: the project's packages are importable

from common.cli import run_cli
from common.errors import UserError  # noqa: E402


def _profile(wav: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    """A stretch of audio -> (mean chroma [12], tempo in BPM)."""
    import librosa

    chroma = librosa.feature.chroma_stft(y=wav, sr=rate).mean(axis=1)
    tempo = float(np.atleast_1d(librosa.beat.beat_track(y=wav, sr=rate)[0])[0])
    return chroma, tempo


def _compare(wav: np.ndarray, rate: int, at: float, span: float) -> tuple[float, float, float]:
    """(|level difference| dB, chroma cosine, |tempo difference| BPM) between ``[at - span, at)`` and
    ``[at, at + span)`` seconds."""
    from media.audio import rms_dbfs

    before, after = (wav[round(s * rate):round((s + span) * rate)] for s in (at - span, at))
    (a, tempo_a), (b, tempo_b) = _profile(before, rate), _profile(after, rate)
    chroma = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return abs(rms_dbfs(before) - rms_dbfs(after)), chroma, abs(tempo_a - tempo_b)


def join_times(seconds: float, window_seconds: float, overlap_seconds: float, frame_rate: int = 50) -> tuple[list, list]:
    """(seconds where each window's sampled music starts, a point in the middle of each window)."""
    from model.long_form import plan_windows

    windows = plan_windows(round(seconds * frame_rate), round(window_seconds * frame_rate),
                           round(overlap_seconds * frame_rate))
    joins = [w.start / frame_rate + w.prompt / frame_rate for w in windows[1:]]
    middles = [(w.start + w.end) / 2 / frame_rate for w in windows]
    return joins, middles


def continuity(wav: np.ndarray, rate: int, window_seconds: float = 30.0, overlap_seconds: float = 5.0,
               span: float = 5.0) -> dict:
    """Level, chroma and tempo across window joins vs inside windows (means over the points that fit)."""
    joins, middles = join_times(len(wav) / rate, window_seconds, overlap_seconds)
    return continuity_at(wav, rate, joins, middles, span)


def middles_between(seconds: float, joins: list[float]) -> list[float]:
    """The middle of each stretch that ``joins`` cut ``[0, seconds)`` into: points as far from a join as can be."""
    edges = [0.0, *sorted(joins), seconds]
    return [(a + b) / 2 for a, b in zip(edges, edges[1:])]


def continuity_at(wav: np.ndarray, rate: int, joins: list[float], inside: list[float] | None = None,
                  span: float = 5.0) -> dict:
    """Level, chroma and tempo across the given ``joins`` (s) vs ``inside`` points (default: ``middles_between``);
    per point and as means over the points whose ``span`` either side fits in the music."""
    seconds = len(wav) / rate
    inside = middles_between(seconds, joins) if inside is None else inside
    fits = lambda t: span <= t <= seconds - span  # noqa: E731
    result = {}
    for name, points in (("join", joins), ("inside", inside)):
        used = [t for t in points if fits(t)]
        scores = np.array([_compare(wav, rate, t, span) for t in used]).reshape(-1, 3)
        mean = lambda i: float(scores[:, i].mean()) if len(scores) else None  # noqa: E731
        result[name] = {"points": len(scores), "level_diff_db": mean(0), "chroma_cosine": mean(1),
                        "tempo_diff_bpm": mean(2),
                        "at": {f"{t:.2f}": dict(zip(("level_diff_db", "chroma_cosine", "tempo_diff_bpm"),
                                                    map(float, row))) for t, row in zip(used, scores)}}
    return result


def cost(video: Path, *infer_args: str) -> dict:
    """Run infer.py on ``video`` in a child process: wall time (s) and the child's peak resident memory (MB)."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(ROOT / "infer.py"), "--video", str(video), *infer_args],
                            capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: kilobytes
    return {"video": str(video), "seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["continuity", "cost"])
    parser.add_argument("path", type=Path)
    parser.add_argument("--window-seconds", type=float, default=30.0)
    parser.add_argument("--overlap-seconds", type=float, default=5.0)
    parser.add_argument("--joins", default=None, help="continuity: join times in seconds, comma-separated "
                                                      "(instead of the window plan)")
    parser.add_argument("--span", type=float, default=5.0, help="continuity: seconds compared either side")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    args, rest = parser.parse_known_args()
    run_cli(lambda: print(json.dumps(_run(args, rest), indent=2)), debug=args.debug)


def _run(args: argparse.Namespace, rest: list[str]) -> dict:
    if not args.path.is_file():
        raise UserError(f"{args.path}: no such file")
    if args.what == "cost":
        return cost(args.path, "--window-seconds", str(args.window_seconds), "--overlap-seconds",
                    str(args.overlap_seconds), *rest)
    from media.audio import read_audio

    wav, rate = read_audio(args.path)  # an unreadable file raises a one-line AudioError
    if args.joins is None:
        return continuity(wav, rate, args.window_seconds, args.overlap_seconds, args.span)
    try:
        joins = [float(t) for t in args.joins.split(",")]
    except ValueError:
        raise UserError(f"--joins must be seconds separated by commas, got {args.joins!r}") from None
    return continuity_at(wav, rate, joins, span=args.span)


if __name__ == "__main__":
    main()
