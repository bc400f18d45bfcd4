"""Turning scoring results into ``report.json``, ``report.md`` and PNG plots (every file written atomically).

Aggregates are the mean over clips with a 95 % percentile-bootstrap interval (``scoring.stats``); FAD, a set
statistic, is computed on all clips and its interval from paired resamples of clips (``--fad-bootstrap``).
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from common.files import atomic_write_text
from scoring.fad import fad_from_clips
from scoring.runner import REFERENCE_SYSTEM, Models, Results, Settings
from scoring.stats import N_BOOTSTRAP, bootstrap_ci, mean_ci

PAIRED_BASE = "ours"  # the system the paired differences are taken from, when present


def ci_method(settings: Settings) -> str:
    return (f"95 % percentile bootstrap over clips ({N_BOOTSTRAP} resamples of the per-clip values; FAD: "
            f"{settings.fad_bootstrap} paired resamples of clips, FAD recomputed on each)")


# (metric, key in the report, column title, which way is better)
COLUMNS = [("fad", "fad", "FAD", "lower"), ("kld", "kld_ref_gen", "KLD ref‖gen", "lower"),
           ("kld", "kld_gen_ref", "KLD gen‖ref", "lower"), ("chroma", "chroma_cosine", "chroma cosine", "higher"),
           ("beat", "bcs", "BCS", "near 1"), ("beat", "bhs", "BHS", "higher"),
           ("av_align", "av_align", "AV-Align", "higher"), ("clap", "clap_audio", "CLAP audio-audio", "higher")]
ARROWS = {"lower": "↓", "higher": "↑", "near 1": "→1"}

DEFINITIONS = {
    "fad": "Fréchet distance between Gaussian fits of all embedding frames of generated vs reference clips "
           "(Kilgour et al. 2019); the embedder is named in the column",
    "kld_ref_gen": "KL(p_ref || p_gen) of the tagger's softmax label distributions, mean over clip pairs "
                   "(audiocraft's 'KLD')",
    "kld_gen_ref": "KL(p_gen || p_ref), the reverse direction",
    "chroma_cosine": "frame-wise cosine similarity of 12-bin librosa chromagrams (32 kHz, n_fft 4096, hop 1024), "
                     "mean over frames (audiocraft's ChromaCosineSimilarityMetric)",
    "bcs": "generated beats / reference beats (librosa beat_track; MuVi)",
    "bhs": "reference beats matched one-to-one by a generated beat within 100 ms / reference beats (MuVi)",
    "av_align": "IoU of librosa onsets and Farneback motion peaks (mean magnitude > 0.1 px, local maxima), "
                "matches within +-1 video frame (Yariv et al. 2024); the reference row is the real music",
    "clap_audio": "cosine similarity of CLAP embeddings of generated and reference clip",
}


def _column_key(key: str, settings: Settings) -> str:
    return f"fad_{settings.embedder}" if key == "fad" else key


def fad_aggregate(results: Results, system: str, n_boot: int) -> dict:
    """FAD of ``system`` over the clips it shares with the reference, with a paired bootstrap interval."""
    generated = results.embeddings.get(system, {})
    clips = sorted(set(generated) & set(results.reference_embeddings))

    def fad_of(indices) -> float:
        return fad_from_clips([generated[clips[i]] for i in indices],
                              [results.reference_embeddings[clips[i]] for i in indices])

    try:
        value = fad_of(range(len(clips)))
    except ValueError as error:
        return {"not_computed": f"not computed: {error}"}
    low, high = bootstrap_ci(fad_of, len(clips), n_boot=n_boot) if n_boot else (None, None)
    return {"mean": value, "ci_low": low, "ci_high": high, "n": len(clips)}


def aggregate(results: Results, settings: Settings, models: Models) -> dict[str, dict[str, dict]]:
    """``{system: {column key: {"mean", "ci_low", "ci_high", "n"} or {"not_computed": why}}}``."""
    table: dict[str, dict[str, dict]] = {}
    for system, clips in results.per_clip.items():
        row = {}
        for metric, key, _, _ in COLUMNS:
            if metric not in settings.metrics or (system == REFERENCE_SYSTEM and key != "av_align"):
                continue
            if metric in models.not_computed:
                row[_column_key(key, settings)] = {"not_computed": models.not_computed[metric]}
            elif key == "fad":
                row[_column_key(key, settings)] = fad_aggregate(results, system, settings.fad_bootstrap)
            else:
                row[key] = mean_ci([values.get(key, math.nan) for values in clips.values()])
        table[system] = row
    return table


def paired_differences(results: Results, settings: Settings) -> dict[str, dict[str, dict]]:
    """``{other system: {metric: mean_ci of (base - other) per clip}}`` over the clips both systems have.

    Why: every system is generated on the same clips with the same seeds, so the clip-to-clip spread (some clips
    are simply harder) is shared; the interval of the per-clip difference is the fair test of "is A better than B",
    and it is much tighter than comparing two separate intervals. The base is ``ours`` when present, else the
    first system.
    """
    systems = [s for s in results.per_clip if s != REFERENCE_SYSTEM]
    if len(systems) < 2:
        return {}
    base = PAIRED_BASE if PAIRED_BASE in systems else systems[0]
    keys = [k for m, k, _, _ in COLUMNS if m in settings.metrics and k != "fad"]
    out: dict[str, dict[str, dict]] = {}
    for other in (s for s in systems if s != base):
        shared = sorted(set(results.per_clip[base]) & set(results.per_clip[other]))
        out[other] = {}
        for key in keys:
            pairs = [(results.per_clip[base][c].get(key, math.nan), results.per_clip[other][c].get(key, math.nan))
                     for c in shared]
            if any(math.isfinite(a) and math.isfinite(b) for a, b in pairs):
                out[other][key] = mean_ci([a - b for a, b in pairs])
    return {"base": base, "versus": out} if out else {}


def undefined_summary(per_clip: dict[str, dict[str, str]]) -> dict[str, dict]:
    """``{metric: {"n": clips left out, "reasons": {reason: count}, "clips": [ids]}}`` of one system: a metric a
    clip gives no value for is reported as such and left out of the mean, never counted as a number."""
    out: dict[str, dict] = {}
    for clip, reasons in sorted(per_clip.items()):
        for metric, why in reasons.items():
            entry = out.setdefault(metric, {"n": 0, "reasons": {}, "clips": []})
            entry["n"] += 1
            entry["reasons"][why] = entry["reasons"].get(why, 0) + 1
            entry["clips"].append(clip)
    return out


def _clean(value):
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def build_report(results: Results, settings: Settings, models: Models, extra: dict | None = None) -> dict:
    """Everything ``report.json`` holds: settings, definitions, aggregates, per-clip values, notes, timing."""
    table = aggregate(results, settings, models)
    clips = len(results.clip_seconds)
    return _clean({
        "settings": {**vars(settings), **(extra or {})},
        "confidence_interval": ci_method(settings),
        "definitions": {_column_key(k, settings): v for k, v in DEFINITIONS.items()},
        "not_computed": models.not_computed,
        "systems": {s: {"aggregate": table[s], "clips": results.per_clip[s],
                        "undefined": undefined_summary(results.undefined.get(s, {}))} for s in table},
        "paired_differences": paired_differences(results, settings),
        "skipped": results.skipped,
        "timing": {"clips": clips, "total_seconds": float(sum(results.clip_seconds)),
                   "seconds_per_clip": float(np.mean(results.clip_seconds)) if clips else None,
                   "audio_seconds_per_clip": float(np.mean(results.audio_seconds)) if clips else None},
    })


def _cell(entry: dict | None) -> str:
    if entry is None:
        return "—"
    if "not_computed" in entry:
        return "not computed"
    if entry.get("mean") is None:
        return "undefined"
    low, high = entry.get("ci_low"), entry.get("ci_high")
    interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    return f"{entry['mean']:.3f}{interval}"


def _settings_line(settings: Settings) -> str:
    flow = f"flow at width {settings.flow_width} (approximate)" if settings.flow_width else "flow at native size"
    line = (f"Settings: FAD embedder `{settings.embedder}`, tagger `{settings.tagger_model}`, chroma "
            f"{'argmax' if settings.chroma_argmax else 'soft'}, AV-Align {flow}.")
    if settings.embedder == "mel":
        line += " FAD on weight-free log-mel statistics: a sanity check, not comparable with published FAD."
    return line


def markdown_report(report: dict, settings: Settings) -> str:
    """Systems as rows, metrics as columns (mean [95 % CI]); then reasons, definitions and timing."""
    keys = [(_column_key(k, settings), title, better) for m, k, title, better in COLUMNS if m in settings.metrics]
    titles = [f"{t} ({settings.embedder}) {ARROWS[b]}" if k.startswith("fad") else f"{t} {ARROWS[b]}"
              for k, t, b in keys]
    lines = ["# Evaluation report", "", f"Cells: mean [95 % CI]. CI: {report['confidence_interval']}.",
             "", _settings_line(settings), "",
             "| system | " + " | ".join(titles) + " |", "|---" * (len(keys) + 1) + "|"]
    for system, entry in report["systems"].items():
        cells = [_cell(entry["aggregate"].get(k)) for k, _, _ in keys]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    counts = ", ".join(f"{system} {len(entry['clips'])}" for system, entry in report["systems"].items())
    lines += ["", f"Clips per system: {counts}."]
    lines += [f"- **{m}** {why}" for m, why in report["not_computed"].items()]
    for system, entry in report["systems"].items():
        for metric, info in (entry.get("undefined") or {}).items():
            reasons = "; ".join(f"{why} ({n})" for why, n in info["reasons"].items())
            lines.append(f"- {system}: `{metric}` undefined for {info['n']} clip(s), left out of the mean: {reasons}")
    lines += _paired_lines(report.get("paired_differences") or {}, keys)
    lines += ["", "## Definitions", ""] + [f"- `{k}`: {v}" for k, v in report["definitions"].items()
                                          if any(k == key for key, _, _ in keys)]
    if report["skipped"]:
        lines += ["", "## Skipped inputs", ""] + [f"- {s}" for s in report["skipped"]]
    timing = report["timing"]
    if timing["clips"]:
        lines += ["", f"Scoring took {timing['total_seconds']:.1f} s for {timing['clips']} clips "
                      f"({timing['seconds_per_clip']:.2f} s per clip of {timing['audio_seconds_per_clip']:.1f} s audio)."]
    return "\n".join(lines) + "\n"


def _paired_lines(paired: dict, keys: list[tuple[str, str, str]]) -> list[str]:
    """Markdown rows ``base - other`` per metric (mean [95 % CI] of the per-clip difference)."""
    if not paired:
        return []
    shown = [(k, t, b) for k, t, b in keys if any(k in row for row in paired["versus"].values())]
    lines = ["", f"## Paired differences: {paired['base']} minus each system, per clip", "",
             "Same clips and seeds for every system; an interval that excludes 0 is a difference the clips support.",
             "", "| versus | " + " | ".join(f"Δ {t}" for _, t, _ in shown) + " |", "|---" * (len(shown) + 1) + "|"]
    for other, row in paired["versus"].items():
        lines.append(f"| {paired['base']} − {other} | " + " | ".join(_cell(row.get(k)) for k, _, _ in shown) + " |")
    return lines


def write_report(out_dir: Path, report: dict, settings: Settings) -> None:
    """``report.json``, ``report.md`` and one bar chart per metric in ``out_dir`` (created if needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(out_dir / "report.md", markdown_report(report, settings))
    for metric, key, title, better in COLUMNS:
        column = _column_key(key, settings)
        entries = {s: e["aggregate"].get(column) for s, e in report["systems"].items()}
        entries = {s: e for s, e in entries.items() if e and e.get("mean") is not None}
        if metric in settings.metrics and entries:
            plot_metric(out_dir / "plots" / f"metric_{column}.png", f"{title} {ARROWS[better]}", entries)


def _figure_module():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 100) -> None:
    """Save ``fig`` as PNG to a temporary file beside ``path``, rename it over ``path``, close the figure.

    The one figure writer: a killed plot never leaves a half-written PNG where the old one was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=dpi)
    os.replace(tmp, path)
    _figure_module().close(fig)


def plot_metric(path: Path, title: str, entries: dict[str, dict]) -> None:
    """Bar per system (mean) with its 95 % interval as error bars."""
    plt = _figure_module()
    names = list(entries)
    means = np.array([entries[n]["mean"] for n in names])
    low = np.array([entries[n]["ci_low"] if entries[n]["ci_low"] is not None else entries[n]["mean"] for n in names])
    high = np.array([entries[n]["ci_high"] if entries[n]["ci_high"] is not None else entries[n]["mean"] for n in names])
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.5))
    errors = np.clip(np.stack([means - low, high - means]), 0, None)
    colors = ["tab:gray" if n == REFERENCE_SYSTEM else "tab:blue" for n in names]  # the real music stands apart
    ax.bar(names, means, yerr=errors, capsize=4, color=colors, alpha=0.8)
    ax.set_title(f"{title} (mean, 95 % CI)")
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    save_figure(fig, path)


def plot_clip(path: Path, clip: str, tracks: list[tuple[str, np.ndarray, np.ndarray]], motion, sample_rate: int) -> None:
    """One row per system: mel spectrogram, the video's motion peaks (red lines) and the music's onsets (ticks)."""
    import librosa

    plt = _figure_module()
    fig, axes = plt.subplots(len(tracks), 1, figsize=(10, 2.2 * len(tracks)), squeeze=False)
    for ax, (system, wav, onsets) in zip(axes[:, 0], tracks):
        mel = librosa.power_to_db(librosa.feature.melspectrogram(y=wav, sr=sample_rate, n_mels=64), ref=np.max)
        seconds = len(wav) / sample_rate
        ax.imshow(mel, origin="lower", aspect="auto", extent=(0, seconds, 0, 64), cmap="magma")
        for peak in (motion.peaks if motion is not None else []):
            ax.axvline(peak, color="cyan", lw=1.0, alpha=0.9, zorder=3)
        ax.plot(onsets, np.full(len(onsets), 60), "v", color="white", ms=4, label="music onsets")
        ax.set_title(f"{clip} — {system}", fontsize=9)
        ax.set_ylabel("mel band")
        ax.set_xlim(0, seconds)
    axes[-1, 0].set_xlabel("seconds (cyan lines: video motion peaks; white ticks: music onsets)")
    fig.tight_layout()
    save_figure(fig, path)


def clip_plot_path(out_dir: Path, clip: str) -> Path:
    """``out_dir/plots/clip_<id>.png`` with the id made safe for a file name."""
    return out_dir / "plots" / f"clip_{re.sub(r'[^A-Za-z0-9_.-]', '_', clip)}.png"
