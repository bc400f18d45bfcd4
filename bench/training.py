"""Training benchmarks (issue §4): a step on cached features against one that runs the frozen encoders on the
fly, the trainable share, model bytes per precision, and the peak memory of one QLoRA step.

A step is what ``train.py`` does per micro-batch at batch size 1: forward under the preset's mixed precision
(bf16 autocast for small/medium), backward (gradient checkpointing as configured), AdamW step. "On the fly" adds
what a step must do without the cache: ``extract_features`` on the clip's video (decode + flow + CLIP) and the
codec's ``encode`` of its music.

``cached_step_overhead`` asks whether the data path costs anything: ``train.py``'s step as the loop runs it (a
``DataLoader`` over ``StepBatches``: crops, collate, beat weights; fusion, condition dropout, the loss) against
the decoder's own forward + backward + AdamW step on the same batch with the fused condition precomputed.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from bench.generation import clip_features
from bench.measure import interleaved, median
from model.config import load_config
from model.sizes import MUSICGEN_CODEC, with_random_weights
from model.delay import training_pair
from training.batches import Example, StepBatches, loader
from training.loop import mixed_precision_for
from training.loss import codebook_cross_entropy
from training.video_music import clip_loss

ROOT = Path(__file__).resolve().parent.parent


def training_step(model, optimizer, features, codes: torch.Tensor, mixed_precision: str) -> float:
    """One optimizer step on one clip (features, codes [1, K, T]); returns the loss."""
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if mixed_precision == "bf16"
                else contextlib.nullcontext())
    with autocast:
        loss = codebook_cross_entropy(*model(model.collate([features]), codes))
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def cached_example(model, seconds: float) -> tuple:
    """(features, codes [1, K, T]) as a feature cache holds them for a clip of ``seconds``."""
    frames = max(1, round(seconds * model.frame_rate))
    codes = torch.randint(0, model.start_token, (1, model.num_codebooks, frames),
                          generator=torch.Generator().manual_seed(0))
    return clip_features(model, seconds), codes


def compare_training(model, video: Path, seconds: float, repeats: int) -> dict:
    """Median step seconds with cached features vs with the frozen encoders run on the fly."""
    saved = model.trainable_state_dict()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    features, codes = cached_example(model, seconds)
    music = 0.1 * torch.randn(1, 1, round(seconds * model.sample_rate), generator=torch.Generator().manual_seed(0))
    precision = mixed_precision_for(model.config.train.mixed_precision, model.placement, log=lambda line: None)

    def on_the_fly():
        fresh = model.extract_features(video, max_seconds=seconds)
        fresh_codes = model.codec.encode(music)[:, :, :codes.shape[-1]].long()
        return training_step(model, optimizer, fresh, fresh_codes, precision)

    training_step(model, optimizer, features, codes, precision)  # warm-up: optimizer state, first allocations
    times, _ = interleaved({"cached": lambda: training_step(model, optimizer, features, codes, precision),
                            "on_the_fly": on_the_fly}, repeats)
    path_times = compare_data_path(model, optimizer, features, codes, precision, repeats)
    model.load_trainable_state(saved)  # leave the model as it was built
    model.eval()
    times.update(path_times)
    medians = {name: median(values) for name, values in times.items()}
    return {"seconds": seconds, "batch_size": 1, "mixed_precision": precision,
            "gradient_checkpointing": model.config.decoder.gradient_checkpointing, "times_s": times,
            "median_s": medians, "cached_step_speedup": medians["on_the_fly"] / medians["cached"],
            "cached_step_overhead": medians["full_step"] / medians["decoder_only"]}


class InMemorySource:
    """The cached clips as ``training.batches.ClipSource`` serves them once read (its ``memory``), without a
    dataset on disk: ``StepBatches`` needs ``example(i)``, ``len``, ``frame_rate`` and ``lead_in_frames`` only."""

    def __init__(self, examples: list[Example], frame_rate: int):
        self.examples, self.frame_rate = examples, frame_rate
        self.lead_in_frames = 0  # the plain beat weights from the crop's first frame, as a default training run

    def __len__(self) -> int:
        return len(self.examples)

    def example(self, index: int) -> Example:
        return self.examples[index]


def compare_data_path(model, optimizer, features, codes: torch.Tensor, mixed_precision: str, repeats: int) -> dict:
    """Seconds of the full cached training step vs the decoder's own step on the same batch (lists per repeat)."""
    train, frames = model.config.train, codes.shape[-1]
    weights = torch.ones(frames) if train.beat_alpha is not None else None
    source = InMemorySource([Example(features, codes[0], torch.tensor([1.0]), weights)], model.frame_rate)
    seconds = frames / model.frame_rate
    steps = StepBatches(source, 1, seconds, model.collate, train.seed, 0, 10 ** 6)
    batches = iter(loader(steps, num_workers=0))  # the loader's own work runs in this process: the worst case
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if mixed_precision == "bf16"
                else contextlib.nullcontext())
    dropout = model.config.guidance.condition_dropout

    def full_step():
        batch = next(batches).to(model.device)
        with autocast:
            loss = clip_loss(model, batch, dropout, model.num_codebooks)
        return _finish_step(model, optimizer, loss)

    batch = next(batches).to(model.device)
    with torch.no_grad():
        hidden, mask = model.full_condition(batch.features, frames + model.num_codebooks - 1)[:2]
    inputs, labels = training_pair(batch.codes, model.start_token, model.start_token, batch.lengths)

    def decoder_only():
        with autocast:
            out = model.decoder(input_ids=inputs.reshape(-1, inputs.shape[-1]), encoder_hidden_states=hidden,
                                encoder_attention_mask=mask)
            loss = codebook_cross_entropy(out.logits.reshape(*inputs.shape, -1), labels,
                                          batch.step_weights(model.num_codebooks))
        return _finish_step(model, optimizer, loss)

    full_step(), decoder_only()  # warm-up
    times, _ = interleaved({"full_step": full_step, "decoder_only": decoder_only}, repeats)
    return times


def _finish_step(model, optimizer, loss: torch.Tensor) -> float:
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def trainable_share(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    decoder = sum(p.numel() for p in model.decoder.parameters())
    return {"total": total, "trainable": trainable, "decoder_with_lora": decoder, "trainable_share": trainable / total}


# ------------------------------------------------------------------------------------------------ model bytes
# Bytes per weight of the decoder layers' linear weights (what bitsandbytes quantizes; heads and embeddings are
# skipped, see model/decoder.py). When quantized, the rest is counted in fp32, as it is held for QLoRA training
# (peft's prepare_model_for_kbit_training upcasts it; measured by bench.qlora); an inference-only load in bf16
# would hold it in 2 bytes.
#   8-bit (LLM.int8): 1 byte + one fp32 scale per output row
#   4-bit NF4 with double quantization: 0.5 byte + one 8-bit absmax per block of 64 + one fp32 per 256 blocks
PRECISION_BYTES = {
    "fp32": lambda n, rows, rest: 4 * (n + rest),
    "bf16": lambda n, rows, rest: 2 * (n + rest),
    "8bit": lambda n, rows, rest: n + 4 * rows + 4 * rest,
    "4bit": lambda n, rows, rest: n / 2 + n / 64 + 4 * n / (64 * 256) + 4 * rest,
}


def _real_sizes(config):
    """The preset with its sizes spelled out: its ``random_init`` (tiny), else the released models' (small, medium)."""
    return config if config.decoder.random_init is not None else with_random_weights(config)


def _decoder_counts(sizes: dict) -> tuple[int, int, int]:
    """(linear weights in the decoder layers, their output rows, all other parameters) of a decoder of ``sizes``."""
    from transformers import MusicgenDecoderConfig, MusicgenForCausalLM

    with torch.device("meta"):
        decoder = MusicgenForCausalLM(MusicgenDecoderConfig(**{"num_codebooks": 4, **sizes}))
    linears = [m for m in decoder.model.decoder.layers.modules() if isinstance(m, torch.nn.Linear)]
    n = sum(m.weight.numel() for m in linears)
    return n, sum(m.out_features for m in linears), sum(p.numel() for p in decoder.parameters()) - n


def _other_parts(config) -> dict:
    """Parameter counts of the CLIP image tower, the codec, the fusion and the LoRA adapters of a preset."""
    from transformers import EncodecConfig, EncodecModel

    from model.fusion import TemporalFusion
    from model.semantic import build_semantic_encoder

    clip = build_semantic_encoder(config.semantic)  # CLIP cannot be built on the meta device; it is small
    decoder = config.decoder.random_init["decoder"]
    with torch.device("meta"):
        codec = EncodecModel(EncodecConfig(**{"sampling_rate": 32000, "audio_channels": 1,
                                              **config.decoder.random_init.get("codec", MUSICGEN_CODEC)}))
        fusion = TemporalFusion(clip.dim, config.motion.feature_dim, decoder["hidden_size"], **vars(config.fusion))
    width, ffn, r = decoder["hidden_size"], decoder.get("ffn_dim", 4 * decoder["hidden_size"]), config.lora.r
    per_layer = sum(r * (width + ffn) if t.split(".")[-1] in ("fc1", "fc2") else 2 * r * width
                    for t in config.lora.targets)  # A [r, in] + B [out, r] per target
    return {"clip_image_tower": sum(p.numel() for p in clip.parameters()),
            "codec": sum(p.numel() for p in codec.parameters()),
            "fusion": sum(p.numel() for p in fusion.parameters()), "lora": decoder["num_hidden_layers"] * per_layer}


def model_bytes(presets: list[str]) -> dict:
    """Bytes of each preset's parts per precision, computed from parameter counts (meta-device builds)."""
    out = {}
    for preset in presets:
        config = _real_sizes(load_config(preset))
        n, rows, rest = _decoder_counts(config.decoder.random_init["decoder"])
        parts = _other_parts(config)
        decoder = {name: fn(n, rows, rest) for name, fn in PRECISION_BYTES.items()}
        encoders = 4 * (parts["clip_image_tower"] + parts["codec"])  # frozen encoders in fp32
        trainable = 4 * (parts["fusion"] + parts["lora"])
        out[preset] = {"parameters": {"decoder_linear": n, "decoder_other": rest, **parts},
                       "decoder_linear_4bit_bytes": PRECISION_BYTES["4bit"](n, rows, 0),
                       "decoder_bytes": decoder, "encoders_fp32_bytes": encoders, "trainable_fp32_bytes": trainable,
                       "total_bytes": {name: b + encoders + trainable for name, b in decoder.items()}}
    return out


# ------------------------------------------------------------------------------------------------ QLoRA memory
def qlora_peak(preset: str, seconds: float, threads: int | None, folder: Path | None = None) -> dict:
    """Save a random-weight checkpoint (once, reused), then measure one 4-bit QLoRA step in a fresh process."""
    folder = folder or Path(tempfile.gettempdir()) / "v2m-bench" / f"musicgen-{preset}-random"
    _run([sys.executable, "-m", "bench.qlora", "save", str(folder), "--preset", preset])
    command = [sys.executable, "-m", "bench.qlora", "step", str(folder), "--preset", preset, "--seconds", str(seconds)]
    output = _run(command + (["--threads", str(threads)] if threads else []))
    return json.loads(output.strip().splitlines()[-1])


def _run(command: list[str]) -> str:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:4])} failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout
