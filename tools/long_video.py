"""Checks for long-video generation (``model.long_form``): continuity across window joins, time and peak memory.

    python tools/long_video.py continuity MUSIC.wav [--window-seconds 30] [--overlap-seconds 5]
    python tools/long_video.py cost VIDEO.mp4 [infer.py arguments ...]

Continuity compares the 5 s before and after each join (where a window's newly sampled music starts) with two
5 s stretches around a point inside a window, by chroma cosine similarity and tempo difference (librosa). With an
untrained model the music is noise and the numbers mean little; with a trained one, joins should score like the
inside of a window.
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


def _compare(wav: np.ndarray, rate: int, at: float, span: float) -> tuple[float, float]:
    """(chroma cosine, |tempo difference|) between ``[at - span, at)`` and ``[at, at + span)`` seconds."""
    (a, tempo_a), (b, tempo_b) = (_profile(wav[round(s * rate):round((s + span) * rate)], rate)
                                  for s in (at - span, at))
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)), abs(tempo_a - tempo_b)


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
    """Chroma cosine and tempo difference across joins vs inside windows (means over the points that fit)."""
    seconds = len(wav) / rate
    joins, middles = join_times(seconds, window_seconds, overlap_seconds)
    fits = lambda t: span <= t <= seconds - span  # noqa: E731
    result = {}
    for name, points in (("join", joins), ("inside", middles)):
        scores = np.array([_compare(wav, rate, t, span) for t in points if fits(t)]).reshape(-1, 2)
        result[name] = {"points": len(scores), "chroma_cosine": float(scores[:, 0].mean()) if len(scores) else None,
                        "tempo_diff_bpm": float(scores[:, 1].mean()) if len(scores) else None}
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
    return continuity(wav, rate, args.window_seconds, args.overlap_seconds)


if __name__ == "__main__":
    main()
