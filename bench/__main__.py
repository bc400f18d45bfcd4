"""Run the benchmark sections, print one table, optionally write the figures as JSON.

Sections (issue 7): 1 conditioning overhead and 3 generation speed (``bench.generation``), 5 scaling with length,
2 feature extraction against decoding (``bench.features``), 4 training step, trainable share, model bytes and the
QLoRA step's peak memory (``bench.training``, ``bench.qlora``). Timings are medians of interleaved repeats and
are compared as ratios within one run.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

SECTIONS = ("generation", "scaling", "features", "training", "sizes", "qlora")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from common.cli import OneLineParser, add_device_arguments

    parser = OneLineParser(prog="python -m bench", description="Speed and memory against plain MusicGen "
                                     "and the issue's goals (real sizes, random weights).")
    parser.add_argument("--preset", default="small", help="tiny, small or medium (default small)")
    parser.add_argument("--seconds", type=float, default=10.0, help="output length of the generation comparisons")
    parser.add_argument("--repeats", type=int, default=3,
                        help="repeats of the short timings: fusion, feature extraction, training steps (default 3)")
    parser.add_argument("--generation-repeats", type=int, default=1,
                        help="repeats of the long generation comparisons (default 1: each run averages hundreds of "
                             "steps, and the paths run in turn)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's choice; 1 is steadier when other jobs share the cores)")
    parser.add_argument("--precisions", default="int8",
                        help="opt-in lower precisions to time against fp32: int8, bfloat16 (comma-separated, or none)")
    parser.add_argument("--reference-loop", action="store_true",
                        help="also time our loop through transformers' forward (the path before FastDecoder)")
    parser.add_argument("--scaling-seconds", default="5,10,30", help="output lengths for the scaling section")
    parser.add_argument("--train-seconds", type=float, default=5.0, help="clip length of the training step")
    parser.add_argument("--video", type=Path, default=None, help="a real video for §2/§4 instead of the test video")
    parser.add_argument("--video-seconds", type=float, default=30.0, help="test video length (default 30)")
    parser.add_argument("--video-size", default="1280x720", help="test video size (default 1280x720, 24 fps)")
    parser.add_argument("--skip", default="", help=f"sections to skip, comma-separated: {', '.join(SECTIONS)}")
    add_device_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.skip = {s for s in args.skip.split(",") if s}
    if args.skip - set(SECTIONS):
        parser.error(f"--skip: unknown section(s) {sorted(args.skip - set(SECTIONS))}")
    args.precisions = [p for p in args.precisions.split(",") if p and p != "none"]
    return args


def build_model(preset: str):
    """The preset at its real sizes with random weights (the tiny preset is random already)."""
    from model.config import load_config
    from model.sizes import with_random_weights
    from model.v2m import VideoToMusic

    config = load_config(preset)
    if config.decoder.random_init is None or config.semantic.random_init is None:
        config = with_random_weights(config)
    return VideoToMusic.from_config(config).eval()


def run(args: argparse.Namespace, log=print) -> dict:
    import torch

    from bench import features, generation, measure, report, training

    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"machine": measure.machine(), "preset": args.preset, "seconds": args.seconds, "repeats": args.repeats,
               "generation_repeats": args.generation_repeats, "command": "python -m bench " + " ".join(args.argv)}
    log(f"machine: {results['machine']}")
    busy = results["machine"]["load_average_1m"] or 0
    if torch.get_num_threads() > 1 and busy > (results["machine"]["cores"] or 1) - torch.get_num_threads() + 0.5:
        log(f"note: load average {busy:.1f} on {results['machine']['cores']} cores; torch threads that wait for a busy "
            "core slow every op down (try --threads 1 on a shared machine)")
    started = time.perf_counter()
    model = build_model(args.preset)
    rows, on = [], lambda name: name not in args.skip
    log(f"built {args.preset} in {time.perf_counter() - started:.0f} s")
    if on("generation"):
        g = results["generation"] = generation.compare_generation(model, args.seconds, args.generation_repeats,
                                                                  args.precisions, args.reference_loop)
        rows += report.generation_rows(g)
        log(f"generation done at {time.perf_counter() - started:.0f} s")
    if on("scaling"):
        lengths = [float(s) for s in args.scaling_seconds.split(",") if s]
        results["scaling"] = generation.scaling(model, lengths)
        rows += report.scaling_rows(results["scaling"])
        log(f"scaling done at {time.perf_counter() - started:.0f} s")
    video = args.video
    if video is None and (on("features") or on("training")):
        width, height = (int(v) for v in args.video_size.lower().split("x"))
        video = features.test_video(args.video_seconds, width, height)
    if on("features"):
        results["features"] = features.compare_features(model, video, args.repeats)
        rows += report.feature_rows(results["features"])
        log(f"features done at {time.perf_counter() - started:.0f} s")
    if on("training"):
        results["training"] = training.compare_training(model, video, args.train_seconds, args.repeats)
    results["trainable"] = training.trainable_share(model)
    if on("sizes"):
        results["sizes"] = training.model_bytes(["small", "medium"] if args.preset != "tiny" else ["tiny"])
    if on("qlora"):
        del model  # the step runs in its own process; free this one's memory first
        results["qlora"] = training.qlora_peak(args.preset, args.train_seconds, args.threads)
    rows += report.training_rows(results.get("training"), results["trainable"], results.get("sizes"),
                                 results.get("qlora"))
    results["elapsed_s"] = time.perf_counter() - started
    results.update(headline(results))
    log(report.format_table(rows))
    log(f"elapsed {results['elapsed_s']:.0f} s; threads {results['machine']['torch_threads']}")
    return results


def headline(results: dict) -> dict:
    """The issue's keys (None where a section was skipped)."""
    pick = lambda section, key: results.get(section, {}).get(key)  # noqa: E731
    return {"conditioning_overhead": pick("generation", "conditioning_overhead"),
            "features_vs_decode": pick("features", "features_vs_decode"),
            "generate_speedup": pick("generation", "generate_speedup"),
            "generate_speedup_cpu_auto": pick("generation", "generate_speedup_cpu_auto"),
            "generate_speedup_by_path": pick("generation", "speedup_by_path"),
            "cached_step_speedup": pick("training", "cached_step_speedup"),
            "cached_step_overhead": pick("training", "cached_step_overhead"),
            "trainable_share": results["trainable"]["trainable_share"]}


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    from common.cli import quiet_libraries

    quiet_libraries()
    results = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        from common.files import atomic_write_json

        atomic_write_json(args.json, _json_safe(results))
    return results


def command() -> None:
    """The ``v2m-bench`` console command (``main`` returns the figures for callers in Python)."""
    main()


if __name__ == "__main__":
    main()
