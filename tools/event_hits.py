"""Does the generated music hit the video's cuts and impacts? Event hit rate on a synthetic test split.

    python tools/event_hits.py RUN_DIR --dataset DATASET_DIR [--tolerance 0.1] [--json OUT.json]

RUN_DIR is an ``eval.py generate`` folder (``<system>/<clip_id>.wav`` and ``manifest.json``); the synthetic set
stores each clip's true event times. Per system: the share of events with a detected music onset (librosa) within
``--tolerance`` seconds, and the same share at *control* times — every event moved by half a beat, where the set
has no event — so a system that fills every moment with onsets does not score by density alone. The lift
(events minus control) is what the video explains. Means with 95 % bootstrap intervals over clips.

Events are a subset of the beats; the rest of the beat grid is only told by the motion's speed (the tempo). Two
more figures say whether a system follows that too, which is what beat hit (BHS) rewards: the *grid lift* (the same
hit-minus-control share on the beats that are not events) and the *tempo match* (librosa's tempo of the music
within 4 % of the clip's tempo; the reference music itself gets about 0.7 on 8 s clips).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import run_cli
from common.errors import UserError  # noqa: E402


def onset_times(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono [N] -> onset times [O] in seconds (librosa's spectral-flux onset detector, backtracked off)."""
    import librosa

    return librosa.onset.onset_detect(y=wav.astype(np.float32), sr=sample_rate, units="time")


def hit_share(onsets: np.ndarray, times: np.ndarray, tolerance: float) -> float:
    """Share of ``times`` [E] with an onset within ``tolerance`` s; NaN without times."""
    if len(times) == 0:
        return float("nan")
    if len(onsets) == 0:
        return 0.0
    return float((np.abs(times[:, None] - onsets[None, :]).min(axis=1) <= tolerance).mean())


TEMPO_TOLERANCE = 0.04  # relative


def clip_scores(wav: np.ndarray, sample_rate: int, events: np.ndarray, beat: float, seconds: float,
                tolerance: float, beats: np.ndarray | None = None) -> dict:
    """Hit shares at ``events`` [E] and half a ``beat`` later; with the clip's ``beats`` [N] also on the rest of
    the grid, and whether the music's tempo matches 60 / ``beat``."""
    import librosa

    onsets = onset_times(wav, sample_rate)
    inside = lambda times: times[times < seconds - tolerance]  # noqa: E731
    events = inside(events)
    scores = {"event": hit_share(onsets, events, tolerance), "control": hit_share(onsets, inside(events + beat / 2),
                                                                                  tolerance),
              "onsets_per_s": len(onsets) / seconds}
    if beats is not None:
        grid = inside(np.array([b for b in beats if len(events) == 0 or np.abs(events - b).min() > tolerance / 2]))
        tempo = float(np.atleast_1d(librosa.beat.beat_track(y=wav.astype(np.float32), sr=sample_rate)[0])[0])
        scores.update(grid=hit_share(onsets, grid, tolerance), grid_control=hit_share(onsets, inside(grid + beat / 2),
                                                                                      tolerance),
                      tempo_match=float(abs(tempo * beat / 60.0 - 1.0) <= TEMPO_TOLERANCE))
    return scores


def system_scores(run: Path, system: str, manifest: dict, rows: dict, tolerance: float) -> dict[str, dict]:
    """``{clip id: clip_scores(...)}`` for one system folder of an ``eval.py generate`` run."""
    from media.audio import read_audio

    per_clip = {}
    for clip, info in manifest["clips"].items():
        row, path = rows.get(clip), run / system / f"{clip}.wav"
        if row is None or not path.is_file() or not row.get("event_times"):
            continue
        wav, rate = read_audio(path)
        beats = np.asarray(row["beat_times"], float) if row.get("beat_times") else None
        per_clip[clip] = clip_scores(wav, rate, np.asarray(row["event_times"], float),
                                     60.0 / float(row["tempo"]), float(info["seconds"]), tolerance, beats)
    return per_clip


def score_run(run: Path, dataset: Path, tolerance: float) -> dict:
    """``{"systems": {system: event hit, control hit, lift, onsets/s}, "paired_lift": {other: ours - other}}``."""
    from datasets import load_from_disk

    from scoring.stats import mean_ci

    manifest_path = run / "manifest.json"
    if not manifest_path.is_file():
        raise UserError(f"{run}: no manifest.json (make it with eval.py generate)")
    manifest = json.loads(manifest_path.read_text())
    rows = {row["id"]: row for row in load_from_disk(str(dataset))[manifest.get("split", "test")]}
    systems = [s for s in manifest["systems"] + ["reference"] if (run / s).is_dir()]
    per_system = {s: system_scores(run, s, manifest, rows, tolerance) for s in systems}
    out = {}
    for system, per_clip in per_system.items():
        scores = list(per_clip.values())
        out[system] = {"event_hit": mean_ci([c["event"] for c in scores]),
                       "control_hit": mean_ci([c["control"] for c in scores]),
                       "lift": mean_ci([c["event"] - c["control"] for c in scores]),
                       "onsets_per_s": mean_ci([c["onsets_per_s"] for c in scores])}
        if scores and "grid" in scores[0]:
            out[system].update(grid_lift=mean_ci([c["grid"] - c["grid_control"] for c in scores]),
                               tempo_match=mean_ci([c["tempo_match"] for c in scores]))
    return {"systems": out, "paired_lift": paired_lift(per_system)}


def paired_lift(per_system: dict[str, dict[str, dict]], base: str = "ours") -> dict[str, dict]:
    """``{other: mean_ci of (lift of base - lift of other)}`` over shared clips: the same clips and seeds for every
    system, so the per-clip difference is the fair comparison (``scoring.report.paired_differences``)."""
    from scoring.stats import mean_ci

    if base not in per_system:
        return {}
    lift = {s: {c: v["event"] - v["control"] for c, v in clips.items()} for s, clips in per_system.items()}
    return {other: mean_ci([lift[base][c] - lift[other][c] for c in sorted(set(lift[base]) & set(lift[other]))])
            for other in lift if other not in (base, "reference")}


def format_table(scores: dict, tolerance: float) -> str:
    def cell(s: dict) -> str:
        return f"{s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"

    lines = [f"| system | event hit (±{tolerance * 1000:.0f} ms) | control hit | lift | grid lift | tempo match | "
             "onsets/s | clips |", "|---|---|---|---|---|---|---|---|"]
    for system, s in scores["systems"].items():
        extra = " | ".join(cell(s[k]) if k in s else "—" for k in ("grid_lift", "tempo_match"))
        lines.append(f"| {system} | {cell(s['event_hit'])} | {cell(s['control_hit'])} | {cell(s['lift'])} | {extra} | "
                     f"{s['onsets_per_s']['mean']:.2f} | {s['event_hit']['n']} |")
    lines += [f"\nlift of ours − {other}, paired per clip: {cell(d)} ({d['n']} clips)"
              for other, d in scores["paired_lift"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Event hit rate of generated music on a synthetic split.")
    parser.add_argument("run", type=Path, help="an eval.py generate folder")
    parser.add_argument("--dataset", required=True, type=Path, help="the synthetic dataset it was generated from")
    parser.add_argument("--tolerance", type=float, default=0.1, help="seconds (default 0.1, as BHS)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)

    def run() -> None:
        scores = score_run(args.run, args.dataset, args.tolerance)
        print(format_table(scores, args.tolerance))
        if args.json:
            from common.files import atomic_write_text  # a killed run leaves the previous figures intact

            atomic_write_text(args.json, json.dumps(scores, indent=2) + "\n")

    run_cli(run, debug=args.debug)


if __name__ == "__main__":
    main()
