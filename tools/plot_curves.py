"""Learning curves of one or more training runs: training loss, validation loss and the sync probe.

    python tools/plot_curves.py runs/demo-adapt runs/demo-nomotion --out models/demo/curves.png

Reads each run's ``metrics.jsonl`` (written by train.py). The sync probe is codebook-0 cross-entropy at code frames
within one frame of a known cut/impact vs at all other frames, on the validation split: a model that predicts the
hits from the video brings the first down towards the second.
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
from scoring.report import save_figure  # noqa: E402


def read_metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"{run}: no metrics.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def smooth(values: list[float], window: int = 50) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    x = np.asarray(values, float)
    cumulative = np.cumsum(np.insert(x, 0, 0.0))
    counts = np.minimum(np.arange(1, len(x) + 1), window)
    return (cumulative[1:] - cumulative[np.arange(1, len(x) + 1) - counts]) / counts


def plot(runs: list[Path], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for run in runs:
        records = read_metrics(run)
        steps = [r["step"] for r in records]
        axes[0].plot(steps, smooth([r["loss"] for r in records]), label=run.name)
        evals = [r for r in records if r.get("val_loss") is not None]
        eval_steps = [r["step"] for r in evals]
        axes[1].plot(eval_steps, [r["val_loss"] for r in evals], marker="o", label=run.name)
        if evals and evals[0].get("sync_event_loss") is not None:
            line, = axes[2].plot(eval_steps, [r["sync_event_loss"] for r in evals], marker="o",
                                 label=f"{run.name}: event frames")
            axes[2].plot(eval_steps, [r["sync_other_loss"] for r in evals], linestyle="--", color=line.get_color(),
                         label=f"{run.name}: other frames")
    titles = ("training loss (beat-weighted, 50-step mean)", "validation loss", "sync probe: codebook-0 loss")
    for ax, title in zip(axes, titles):
        ax.set_title(title), ax.set_xlabel("step"), ax.legend(fontsize=8), ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out, dpi=90)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Plot train.py learning curves and the sync probe.")
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    run_cli(lambda: plot(args.runs, args.out), debug=args.debug)


if __name__ == "__main__":
    main()
