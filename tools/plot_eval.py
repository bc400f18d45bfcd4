"""Plot an evaluation run: each system's beat hit (BHS) and event-hit lift with 95 % intervals, and ours minus each
other system on the same clips (paired differences).

    python tools/plot_eval.py runs/eval-demo --out docs/demo-eval/alignment.png

Reads ``RUN/report/report.json`` (written by ``eval.py``) and, when present, ``RUN/event_hits.json`` (written by
``tools/event_hits.py``). Why paired differences: every system is generated on the same clips with the same seeds,
so clip-to-clip variation (some videos are simply easier) cancels in ours - other, and its interval is the honest
answer to "does the motion stream help" even when the per-system intervals overlap.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import run_cli
from common.errors import UserError  # noqa: E402
from scoring.report import save_figure  # noqa: E402

PANELS = (("bhs", "beat hit (BHS)"), ("lift", "event-hit lift"))
SYSTEM_ORDER = ("ours", "no_motion", "unconditional")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: {error}") from None


def collect(run: Path) -> dict[str, dict[str, dict]]:
    """``{metric: {"systems": {name: interval}, "paired": {name: interval}}}`` for the metrics in PANELS.

    An interval is ``{"mean", "ci_low", "ci_high", "n"}`` as in the reports; metrics a run lacks are left out.
    """
    report = _read_json(run / "report" / "report.json")
    panels: dict[str, dict[str, dict]] = {}
    bhs_systems = {name: s["aggregate"]["bhs"] for name, s in report["systems"].items() if "bhs" in s["aggregate"]}
    if bhs_systems:
        paired = report.get("paired_differences", {}).get("versus", {})
        panels["bhs"] = {"systems": bhs_systems,
                         "paired": {name: d["bhs"] for name, d in paired.items() if "bhs" in d}}
    hits_path = run / "event_hits.json"
    if hits_path.is_file():
        hits = _read_json(hits_path)
        # the reference's lift is 1 by construction (its onsets are the events): left out so the scale stays readable
        panels["lift"] = {"systems": {name: s["lift"] for name, s in hits["systems"].items() if name != "reference"},
                          "paired": dict(hits.get("paired_lift", {}))}
    if not panels:
        raise UserError(f"{run}: the report has no beat-hit scores and there is no event_hits.json")
    return panels


def _ordered(names) -> list[str]:
    return sorted(names, key=lambda n: (SYSTEM_ORDER.index(n) if n in SYSTEM_ORDER else len(SYSTEM_ORDER), n))


def _interval_bars(axis, intervals: dict[str, dict], labels: list[str], colour: str) -> None:
    means = [intervals[n]["mean"] for n in labels]
    low = [intervals[n]["mean"] - intervals[n]["ci_low"] for n in labels]
    high = [intervals[n]["ci_high"] - intervals[n]["mean"] for n in labels]
    axis.errorbar(range(len(labels)), means, yerr=[low, high], fmt="o", color=colour, capsize=6, lw=2)
    axis.set_xticks(range(len(labels)), labels)
    axis.set_xlim(-0.5, len(labels) - 0.5)
    axis.grid(axis="y", alpha=0.3)


def plot(panels: dict[str, dict[str, dict]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m, _ in PANELS if m in panels]
    figure, axes = plt.subplots(2, len(metrics), figsize=(4.2 * len(metrics), 6.5), squeeze=False)
    for column, metric in enumerate(metrics):
        label = dict(PANELS)[metric]
        top, bottom = axes[0][column], axes[1][column]
        systems = _ordered(panels[metric]["systems"])
        _interval_bars(top, panels[metric]["systems"], systems, "tab:blue")
        top.set_title(f"{label}, mean [95 % CI]")
        paired = _ordered(panels[metric]["paired"])
        if paired:
            _interval_bars(bottom, panels[metric]["paired"], paired, "tab:green")
            bottom.set_xticks(range(len(paired)), [f"ours - {n}" for n in paired])
            bottom.axhline(0.0, color="grey", lw=1)
            bottom.set_title(f"{label}: paired difference")
        else:
            bottom.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, out, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Plot beat hit and event-hit lift of an eval.py run.")
    parser.add_argument("run", type=Path, help="the --out folder of eval.py generate")
    parser.add_argument("--out", type=Path, required=True, help="image to write (.png)")
    parser.add_argument("--title", default=None)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)

    def go() -> None:
        panels = collect(args.run)
        n = max(i["n"] for p in panels.values() for i in p["systems"].values())
        plot(panels, args.out, args.title or f"{args.run.name}: {n} clips")
        print(f"wrote {args.out}")

    run_cli(go, debug=args.debug)


if __name__ == "__main__":
    main()
