"""The fuzzer in CI: 200 damaged or re-containered small videos through ``infer.py`` (tools/fuzz_inputs.py).

Seed 0 holds, among its cases, one that ended in an internal AttributeError before ``media.video`` checked that
a damaged stream header still names a codec (case 85): the run below fails on it if that check goes.
"""
from __future__ import annotations

from tools.fuzz_inputs import run_fuzz, summary


def test_two_hundred_damaged_videos_never_crash_hang_or_leave_partial_output(tmp_path):
    results = run_fuzz(200, seed=0, work=tmp_path, timeout=120.0, progress=False)
    report = summary(results)
    assert report["cases"] == 200 and not report["findings"], report["findings"][:5]
    assert report["counts"].get("music", 0) > 100 and report["counts"].get("refused", 0) > 20  # both kinds ran
