"""Generation benchmarks: conditioning overhead (issue §1), our sampling loop against transformers' ``generate()``
and lower precisions with their fidelity (§3), time and memory against the output length (§5).

All runs here are greedy with the preset's guidance scale (3.0: [cond; null] rows, one batched step), so the
stock and our paths must give the same tokens, and lower precisions can be compared with fp32 step by step.
The condition is the fused sequence of a clip of the same length (features with the shapes real extraction gives:
``clip_fps`` semantic and ``flow_fps`` motion tokens, random values — content does not change the cost).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F
from transformers import LogitsProcessor, LogitsProcessorList

from bench.measure import interleaved, median, peak_rss_during, taking_turns, timed
from common.device import placement_for
from model.decoder import base_model
from model.delay import delay_positions
from model.fast_decoder import FastDecoder, layer_projections
from model.features import VideoFeatures
from model.guidance import guided_logits, with_null_branch
from model.sampling import TransformersSteps, sample_codes, stock_generate


def clip_features(model, seconds: float, seed: int = 0) -> VideoFeatures:
    """Features shaped like ``extract_features`` output for ``seconds`` of video (values random)."""
    g = torch.Generator().manual_seed(seed)
    clip_fps, flow_fps = model.config.semantic.clip_fps, model.config.motion.flow_fps
    semantic_times = torch.arange(0, seconds, 1 / clip_fps)
    motion_times = torch.arange(1, round(seconds * flow_fps)) / flow_fps
    semantic = F.normalize(torch.randn(len(semantic_times), model.semantic_encoder.dim, generator=g), dim=-1)
    motion = torch.rand(len(motion_times), model.config.motion.feature_dim, generator=g)
    return VideoFeatures(semantic, semantic_times, motion, motion_times, seconds)


def text_like(hidden: torch.Tensor, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain-MusicGen condition: random encoder states of the same shape and scale, all positions real."""
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(hidden.shape, generator=g) * hidden.float().std()
    return states.to(hidden.dtype), torch.ones(hidden.shape[:2], dtype=torch.long)


class Watched:
    """Wraps a stepper: calls ``turn()`` before each step (``bench.measure.taking_turns``) and, with ``record``,
    keeps each step's input tokens and logits (for the fidelity comparison)."""

    def __init__(self, stepper, turn=None, record: bool = False):
        self.stepper, self.turn, self.record, self.inputs, self.logits = stepper, turn, record, [], []

    def start(self, hidden, mask, steps, aligned=None):
        self.stepper.start(hidden, mask, steps, aligned)

    def step(self, tokens):
        if self.turn:
            self.turn()
        logits = self.stepper.step(tokens)
        if self.record:
            self.inputs.append(tokens.clone()), self.logits.append(logits.clone())
        return logits

    def finish(self):
        self.stepper.finish()


class TakeTurn(LogitsProcessor):
    """The same turn-taking inside transformers' ``generate()``: a logits processor runs once per step."""

    def __init__(self, turn):
        self.turn = turn

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.turn()
        return scores


@torch.no_grad()
def forced_logits(stepper, hidden: torch.Tensor, mask: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
    """Logits [S, N, K, V] of ``stepper`` fed the given step inputs (teacher forcing on another path's tokens)."""
    stepper.start(hidden, mask, len(inputs))
    logits = torch.stack([stepper.step(tokens) for tokens in inputs])
    stepper.finish()
    return logits


def fidelity(reference: torch.Tensor, other: torch.Tensor, scale: float, real: torch.Tensor) -> dict:
    """Guided logits of two paths over the same steps: argmax agreement and cosine, where a real code is predicted.

    reference/other [S, 2B, K, V] (cond rows then null rows), real bool [S, K] (the next token is a code).
    """
    a, b = guided_logits(reference.transpose(0, 1), scale), guided_logits(other.transpose(0, 1), scale)  # [B,S,K,V]
    keep = real[None].expand(a.shape[0], -1, -1)
    cosine = F.cosine_similarity(a, b, dim=-1)[keep]
    agree = (a.argmax(-1) == b.argmax(-1))[keep].float()
    return {"argmax_agreement": agree.mean().item(), "logit_cosine_mean": cosine.mean().item(),
            "logit_cosine_min": cosine.min().item()}


def _cpu_auto(medians: dict) -> dict:
    """``generate_speedup_cpu_auto``: stock fp32 against our loop at the CPU's ``--precision auto`` (None when
    that sampling path was not among the timed precisions)."""
    sampling = placement_for("cpu", "auto").sampling  # "int8" (common.device: measured to hold its quality)
    path = "ours" if sampling == "float32" else f"ours_{sampling}"
    return {"cpu_auto_sampling": sampling,
            "generate_speedup_cpu_auto": medians["stock"] / medians[path] if path in medians else None}


def _agreement(codes: torch.Tensor, reference: torch.Tensor) -> dict:
    """Free-running greedy codes against the reference: share equal, and the first frame where they part."""
    differ = (codes != reference).any(dim=(0, 1)).nonzero()
    return {"token_agreement": (codes == reference).float().mean().item(),
            "first_divergent_frame": int(differ[0]) if len(differ) else None}


@dataclass
class Request:
    """One generation request of the comparison: the video condition, its plain twin, length and guidance."""

    model: object
    seconds: float
    hidden: torch.Tensor  # [1, L, D] fused video condition
    mask: torch.Tensor
    plain: tuple[torch.Tensor, torch.Tensor]  # text-like states and mask of the same shape
    frames: int
    scale: float
    fusion_s: float

    @classmethod
    def build(cls, model, seconds: float) -> "Request":
        features = clip_features(model, seconds)
        fusion, _ = interleaved({"fusion": lambda: model.condition(model.collate([features]))}, 5)
        hidden, mask = model.condition(model.collate([features]))
        return cls(model, seconds, hidden, mask, text_like(hidden), max(1, round(seconds * model.frame_rate)),
                   model.config.guidance.scale, median(fusion["fusion"]))

    def run(self, stepper, plain: bool = False, frames: int | None = None) -> torch.Tensor:
        """Greedy codes [1, K, T] through ``stepper`` (our loop)."""
        hidden, mask = self.plain if plain else (self.hidden, self.mask)
        return sample_codes(stepper, hidden, mask, frames or self.frames, self.model.num_codebooks,
                            self.model.start_token, self.scale, greedy=True)

    def stock(self, turn=None, frames: int | None = None) -> torch.Tensor:
        """Greedy codes through transformers' ``generate()``."""
        extra = {"logits_processor": LogitsProcessorList([TakeTurn(turn)])} if turn else {}
        return stock_generate(self.model.decoder, self.hidden, self.mask, frames or self.frames,
                              self.model.num_codebooks, self.model.start_token, self.scale, greedy=True, **extra)


def compare_generation(model, seconds: float, repeats: int, precisions: list[str],
                       reference_loop: bool = False) -> dict:
    """§1 + §3 at one length: ours (fp32) vs plain MusicGen, vs stock generate(), vs lower precisions.

    The paths take turns step by step (``taking_turns``), ``repeats`` times; the first fp32 run records its steps.
    """
    request = Request.build(model, seconds)
    rounded = {p: timed(lambda p=p: model.decoder_stepper(p)) for p in precisions}  # {p: (stepper, seconds)}
    recorder = Watched(FastDecoder(model.decoder), record=True)
    fast = lambda turn: Watched(FastDecoder(model.decoder), turn)  # noqa: E731

    def ours(turn):
        if recorder.inputs:
            return request.run(fast(turn))
        recorder.turn = turn
        return request.run(recorder)

    candidates = {"ours": ours, "plain": lambda turn: request.run(fast(turn), plain=True), "stock": request.stock}
    if reference_loop:
        candidates["ours_transformers_forward"] = lambda turn: request.run(Watched(TransformersSteps(model.decoder),
                                                                                   turn))
    candidates.update({f"ours_{p}": (lambda turn, p=p: request.run(Watched(rounded[p][0], turn))) for p in precisions})
    for stepper in [FastDecoder(model.decoder)] + [stepper for stepper, _ in rounded.values()]:
        request.run(stepper, frames=2)  # warm-up: first-call allocations
    request.stock(frames=2)
    times, results = {name: [] for name in candidates}, {}
    for _ in range(repeats):
        seconds_taken, results = taking_turns(candidates)
        [times[name].append(seconds_taken[name]) for name in candidates]
    return _summary(request, times, results, rounded, recorder)


def _summary(request: Request, times: dict, results: dict, rounded: dict, recorder: Watched) -> dict:
    model, medians = request.model, {name: median(values) for name, values in times.items()}
    steps = request.frames + model.num_codebooks - 1
    streamed = {p: streamed_bytes(model, p) for p in ["float32", *rounded]}
    return {
        "seconds": request.seconds, "steps": steps, "condition_tokens": int(request.hidden.shape[1]),
        "guidance_scale": request.scale, "fusion_s": request.fusion_s, "times_s": times, "median_s": medians,
        "conditioning_overhead": (request.fusion_s + medians["ours"]) / medians["plain"],
        "generate_speedup": medians["stock"] / medians["ours"],
        "speedup_by_path": {name: medians["stock"] / t for name, t in medians.items() if name.startswith("ours")},
        **_cpu_auto(medians),
        "stock_vs_ours": _agreement(results["stock"], results["ours"]),
        "precisions": {p: {"build_s": build_s, **_agreement(results[f"ours_{p}"], results["ours"]),
                           **_forced_fidelity(stepper, recorder, request)}
                       for p, (stepper, build_s) in rounded.items()},
        "weight_bytes_per_step": streamed,
        "weight_gb_per_s": {p: b / (medians["ours" if p == "float32" else f"ours_{p}"] / steps) / 1e9
                            for p, b in streamed.items()},
    }


def _forced_fidelity(stepper, recorder: Watched, request: Request) -> dict:
    """``stepper`` fed the fp32 run's step inputs; its guided logits compared with the fp32 ones."""
    hidden2, mask2 = with_null_branch(request.hidden, request.mask)
    other = forced_logits(stepper, hidden2, mask2, recorder.inputs)
    real = delay_positions(request.model.num_codebooks, request.frames)[:, 1:].T  # [S, K]: step s predicts s + 1
    return fidelity(torch.stack(recorder.logits), other, request.scale, real)


def streamed_bytes(model, precision: str) -> int:
    """Weight bytes a FastDecoder step reads: the layers' projections (not the cross-attention keys and values,
    computed once) stored in ``precision``, and the fp32 heads."""
    base = base_model(model.decoder)
    projections = sum(m.weight.numel() for layer in base.model.decoder.layers
                      for name, modules in layer_projections(layer).items() if name != "xkv" for m in modules)
    heads = sum(h.weight.numel() for h in base.lm_heads)
    return projections * {"float32": 4, "bfloat16": 2, "int8": 1}[precision] + 4 * heads


def scaling(model, lengths: list[float]) -> dict:
    """§5: greedy generation time (fp32, guidance) and peak resident memory for each output length, one at a time."""
    out = {}
    for seconds in lengths:
        steps = max(1, round(seconds * model.frame_rate)) + model.num_codebooks - 1
        out[seconds] = _one_length(model, seconds)
        out[seconds].update(steps=steps, ms_per_step=1000 * out[seconds]["time_s"] / steps,
                            kv_cache_mb=_kv_cache_mb(model, steps, rows=2))
    return out


def _one_length(model, seconds: float) -> dict:
    hidden, mask = model.condition(model.collate([clip_features(model, seconds)]))
    frames = max(1, round(seconds * model.frame_rate))

    def run():
        return sample_codes(FastDecoder(model.decoder), hidden, mask, frames, model.num_codebooks,
                            model.start_token, model.config.guidance.scale, greedy=True)

    (_, seconds_taken), peak, before = peak_rss_during(lambda: timed(run))
    return {"time_s": seconds_taken, "peak_rss_mb": peak, "rss_before_mb": before}


def _kv_cache_mb(model, steps: int, rows: int) -> float:
    """Self-attention cache of one generation: layers x (keys, values) x rows x steps x hidden, fp32."""
    config = model.decoder.config
    return config.num_hidden_layers * 2 * rows * steps * config.hidden_size * 4 / 2**20
