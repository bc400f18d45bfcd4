"""Peak memory of one QLoRA training step, in a fresh process (so nothing else is resident).

    python -m bench.qlora save DIR --preset small          # random-weight MusicGen at the preset's real sizes
    python -m bench.qlora step DIR --preset small --seconds 5 [--threads N]

``save`` writes a ``MusicgenForConditionalGeneration`` with ``save_pretrained`` (as a Hub checkpoint looks);
``step`` loads it with ``decoder.quantization=4bit`` (bitsandbytes NF4, bf16 compute, as tests/test_quantized.py
does at the tiny size), runs one optimizer step on cached features of ``--seconds`` and prints one JSON line:
resident memory after loading, peak during the step, peak of the whole process, step time, and the bytes the
quantized decoder actually holds, by kind (to check the computed sizes of ``bench.training.model_bytes``).
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch

from bench.measure import peak_rss_during, resident_mb


def save(folder: Path, preset: str) -> None:
    from model.config import load_config
    from model.decoder import random_musicgen
    from model.sizes import with_random_weights

    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return
    random_musicgen(with_random_weights(load_config(preset)).decoder.random_init).save_pretrained(folder)


def held_bytes(decoder: torch.nn.Module) -> dict:
    """Bytes the (quantized) decoder holds: 4-bit linear weights with their quantization states, LoRA, the rest."""
    out = {"quantized_linear": 0, "lora": 0, "other_parameters": 0,
           "buffers": sum(b.numel() * b.element_size() for b in decoder.buffers())}
    for name, p in decoder.named_parameters():
        size = p.numel() * p.element_size()
        state = getattr(p, "quant_state", None)
        if state is not None:
            while state is not None:  # nested (double) quantization keeps a second state
                size += sum(t.numel() * t.element_size() for t in (state.absmax, state.code) if t is not None)
                state = getattr(state, "state2", None)
            out["quantized_linear"] += size
        else:
            out["lora" if "lora_" in name else "other_parameters"] += size
    return out


def step(folder: Path, preset: str, seconds: float) -> dict:
    from bench.training import cached_example
    from model.config import load_config
    from model.sizes import with_random_weights
    from model.v2m import VideoToMusic

    config = with_random_weights(load_config(preset))
    config.decoder.base, config.decoder.random_init = str(folder), None
    config.decoder.quantization, config.decoder.compute_dtype = "4bit", "bfloat16"
    model = VideoToMusic.from_config(config).train()
    loaded_mb = resident_mb()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    features, codes = cached_example(model, seconds)
    (_, step_s), step_peak_mb, _ = peak_rss_during(lambda: _timed_step(model, optimizer, features, codes))
    return {"preset": preset, "seconds": seconds, "rss_after_load_mb": loaded_mb, "step_peak_rss_mb": step_peak_mb,
            "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "step_s": step_s,
            "decoder_bytes": held_bytes(model.decoder), "threads": torch.get_num_threads()}


def _timed_step(model, optimizer, features, codes):
    from bench.training import training_step

    start = time.perf_counter()
    training_step(model, optimizer, features, codes, "bf16")
    return None, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["save", "step"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.action == "save":
        save(args.folder, args.preset)
    else:
        print(json.dumps(step(args.folder, args.preset, args.seconds)))


if __name__ == "__main__":
    main()
