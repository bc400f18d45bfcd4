"""bench/gpu_check.py works where it matters (it only runs on lent GPU machines): its sections run at the tiny
preset on the CPU and its JSON says what ran."""
from __future__ import annotations

import json

from tests.conftest import ROOT


def test_the_gpu_check_runs_its_sections_on_the_cpu(tmp_path):
    from bench import gpu_check

    results = gpu_check.main(["--device", "cpu", "--quick", "--out", str(tmp_path / "check.json"),
                              "--skip", "qlora_step_tiny,inference_bf16,inference_4bit"])
    assert json.loads((tmp_path / "check.json").read_text())["environment"]["torch"]
    for section in ("prepare", "features", "training"):
        assert results[section]["status"] == "ok", results[section]
    assert results["training"]["exact_resume"] and results["training"]["resumed"]
    assert results["cuda_tests"]["status"] == "skipped"
    assert (ROOT / "tests" / "test_cuda.py").is_file()
