"""The benchmark runs end to end at the tiny preset and writes the issue's figures (values are not goals here)."""
from __future__ import annotations

import json
import math

import torch

KEYS = ("conditioning_overhead", "features_vs_decode", "generate_speedup", "generate_speedup_cpu_auto",
        "cached_step_speedup", "cached_step_overhead", "trainable_share")
TINY = ["--preset", "tiny", "--threads", "1", "--seconds", "0.3", "--repeats", "1", "--generation-repeats", "1",
        "--scaling-seconds", "0.2,0.3", "--train-seconds", "0.5", "--precisions", "int8,bfloat16", "--skip", "qlora"]


def _numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def test_bench_tiny_writes_finite_figures(tmp_path, video_path, capsys):
    from bench.__main__ import main

    out, threads = tmp_path / "bench.json", torch.get_num_threads()
    try:  # one thread: tiny ops are all overhead, and a second thread only waits on a shared machine
        main(TINY + ["--video", str(video_path), "--json", str(out)])
    finally:
        torch.set_num_threads(threads)
    figures = json.loads(out.read_text())
    for key in KEYS:
        assert isinstance(figures[key], float) and math.isfinite(figures[key]), key
    for section in ("generation", "scaling", "features", "training", "sizes", "machine"):
        assert section in figures
    assert all(math.isfinite(v) for v in _numbers({k: v for k, v in figures.items() if k != "machine"}))
    assert figures["generation"]["stock_vs_ours"]["token_agreement"] == 1.0  # fp32 paths give the same tokens
    table = capsys.readouterr().out
    assert "conditioning overhead" in table and "not yet" in table
