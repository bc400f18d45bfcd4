"""An inference-only view of the MusicGen decoder (+ LoRA) for cached sampling: static KV cache, one call per step.

Why: transformers' decoder forward spends each one-token step on cache objects, mask builders and module hooks
(24 layers at width 32, where a step is nearly all overhead: 19 ms through transformers, 8 ms here, one thread;
a small-size step is ~150-200 ms, so this is a few per cent there). Here a step is the bare computation
— embeddings, per layer self-attention over a preallocated cache, cross-attention over keys/values computed once,
feed-forward — then the heads, reading the decoder's own weights. In ``float32`` nothing is copied (the live
parameters, LoRA applied as peft applies it), so the logits equal transformers' to the last bit.

At one token per row each step reads every weight once, so on a CPU its cost is memory traffic: the opt-in
``bfloat16`` and ``int8`` precisions store the layers' linear weights in 2 or 1 bytes (LoRA merged first, q/k/v
fused; int8 = per-channel weights with dynamic per-row activation quantization, fbgemm). Embeddings, heads, layer
norms, attention and the cache stay fp32. ``python -m bench`` reports their speed and their fidelity to fp32.

    tokens [N, K] (step t) --embed + position t--> x [N, 1, D] --layers--> logits [N, K, V]      N = rows (2B with CFG)

Only plain ``nn.Linear`` projections are supported (not bitsandbytes 4/8-bit bases): ``supports(decoder)`` says so.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from model.decoder import base_model as _base_model

PRECISIONS = ("float32", "bfloat16", "int8")


def _parts(module: nn.Module) -> tuple[nn.Linear, list[tuple[torch.Tensor, torch.Tensor, float]]]:
    """(base ``nn.Linear``, active LoRA adapters as (A [r, in], B [out, r], scaling)) of a plain or peft Linear."""
    if type(module) is nn.Linear:
        return module, []
    base = getattr(module, "base_layer", None)
    if type(base) is not nn.Linear:
        raise NotImplementedError(f"{type(module).__name__} over {type(base).__name__}: not a plain nn.Linear base")
    if module.disable_adapters or module.merged:
        return base, []
    if getattr(module, "fan_in_fan_out", False) or getattr(module, "lora_variant", None) or any(
            module.lora_bias.get(name, False) for name in module.active_adapters):
        raise NotImplementedError("LoRA variants (DoRA, fan_in_fan_out, lora_bias) are not supported")
    return base, [(module.lora_A[name].weight, module.lora_B[name].weight, float(module.scaling[name]))
                  for name in module.active_adapters if name in module.lora_A]


def layer_projections(layer: nn.Module) -> dict[str, list[nn.Module]]:
    """The projections of one decoder layer, grouped by the input they read (each group is one matmul when fused)."""
    s, c = layer.self_attn, layer.encoder_attn
    return {"qkv": [s.q_proj, s.k_proj, s.v_proj], "o": [s.out_proj], "xq": [c.q_proj], "xkv": [c.k_proj, c.v_proj],
            "xo": [c.out_proj], "fc1": [layer.fc1], "fc2": [layer.fc2]}


def hooked_modules(decoder: nn.Module) -> list[str]:
    """Modules of ``decoder`` with forward hooks, which a ``FastDecoder`` step would skip (it reads their weights).

    Ignored: transformers' ``make_inputs_require_grads`` (registered for gradient checkpointing; training only).
    """
    harmless = {"make_inputs_require_grads"}
    return [name for name, module in _base_model(decoder).named_modules()
            if any(getattr(hook, "__name__", "") not in harmless
                   for hook in [*module._forward_hooks.values(), *module._forward_pre_hooks.values()])]


def supports(decoder: nn.Module) -> bool:
    """True when every projection of ``decoder`` is a plain ``nn.Linear`` (possibly under vanilla LoRA) and no
    module has a forward hook that a step would skip."""
    try:
        for layer in _base_model(decoder).model.decoder.layers:
            for modules in layer_projections(layer).values():
                [_parts(m) for m in modules]
    except NotImplementedError:
        return False
    return not hooked_modules(decoder)


def _int8(weight: torch.Tensor) -> torch.Tensor:
    """fp32 [out, in] -> fbgemm-packed int8 weight, one symmetric scale per output channel."""
    scale = weight.abs().amax(dim=1).clamp_min(1e-12).double() / 127.0
    quantized = torch.quantize_per_channel(weight, scale, torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8)
    return torch.ops.quantized.linear_prepack(quantized, None)


class Linear:
    """The projections ``modules`` of one input, outputs concatenated: x [..., in] -> [..., sum(out)], float32.

    ``float32`` reads the live parameters (one matmul per module, LoRA as peft computes it); ``bfloat16`` and
    ``int8`` merge LoRA into a copy, concatenate the modules and round once (one matmul for all of them).
    """

    def __init__(self, modules: list[nn.Module], precision: str = "float32"):
        parts = [_parts(m) for m in modules]
        if any(base.bias is not None for base, _ in parts):
            raise NotImplementedError("projections with a bias (MusicGen's have none)")
        self.precision = precision
        if precision == "float32":
            self.parts = [(base.weight, lora) for base, lora in parts]
            return
        weight = torch.cat([_merged(base, lora) for base, lora in parts])  # [sum(out), in]
        self.weight = weight.bfloat16() if precision == "bfloat16" else _int8(weight)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.precision == "int8":  # fbgemm quantizes its input with one scale: rows are scaled to one range
            rows = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12)  # first, so each row keeps its precision
            return torch.ops.quantized.linear_dynamic(x / rows, self.weight, True) * rows  # (and is batch-independent)
        if self.precision == "bfloat16":
            return F.linear(x.bfloat16(), self.weight).float()
        outputs = []
        for weight, lora in self.parts:  # live weights in their own dtype (bf16 / fp16 on a GPU); LoRA often fp32
            y = F.linear(x.to(weight.dtype), weight)
            for a, b, scaling in lora:  # peft's order: base(x) + B(A(x)) * scaling
                y = y + (F.linear(F.linear(x.to(a.dtype), a), b) * scaling).to(y.dtype)
            outputs.append(y)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)


def _merged(base: nn.Linear, lora: list) -> torch.Tensor:
    weight = base.weight.detach().float()
    for a, b, scaling in lora:
        weight = weight + scaling * (b.detach().float() @ a.detach().float())
    return weight


class FastDecoder:
    """``start(hidden, mask, steps)`` once per generation, ``step(tokens)`` per token, ``finish()`` to free the cache.

    Built from a ``MusicgenForCausalLM`` (optionally peft-wrapped); always runs as in eval mode (no dropout).
    """

    def __init__(self, decoder: nn.Module, precision: str = "float32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        base = _base_model(decoder)
        inner, config = base.model.decoder, base.config
        self.decoder, self.precision = decoder, precision
        self.dim, self.num_heads = config.hidden_size, config.num_attention_heads
        self.embeddings = [e.weight for e in inner.embed_tokens]  # K x [V+1, D]
        # activations: the live weights' dtype (fp32, or bf16 / fp16 weights on a GPU); fp32 around rounded copies
        self.dtype = self.embeddings[0].dtype if precision == "float32" else torch.float32
        self.positions = inner.embed_positions.weights  # [P, D] sinusoids
        self.layers = [self._layer(layer, precision) for layer in inner.layers]
        self.final_norm = inner.layer_norm
        self.heads = Linear(list(base.lm_heads))  # K x [V, D], kept fp32 (small, sensitive)
        self.cache: list[tuple[torch.Tensor, ...]] = []
        self.aligned: torch.Tensor | None = None

    @staticmethod
    def _layer(layer: nn.Module, precision: str) -> dict:
        # cross-attention keys/values are computed once per generation: kept exact
        out = {name: Linear(modules, "float32" if name == "xkv" else precision)
               for name, modules in layer_projections(layer).items()}
        out.update(norm1=layer.self_attn_layer_norm, norm2=layer.encoder_attn_layer_norm, norm3=layer.final_layer_norm)
        return out

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """[N, T, D] -> [N, H, T, D / H] (attention heads)."""
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    @torch.no_grad()
    def start(self, hidden: torch.Tensor, mask: torch.Tensor, steps: int, aligned: torch.Tensor | None = None) -> None:
        """Encoder states [N, L, D] with mask [N, L]; allocates the self-attention cache for ``steps`` tokens.

        ``aligned`` [N, S, D] (the time-aligned term, ``model.aligned``) is added to step t's input embedding
        (its last step repeats past S), as the hook of ``model.aligned.aligned_injection`` does on the HF path.
        """
        hooked = hooked_modules(self.decoder)
        if hooked:  # e.g. a hook added after this stepper was built: its effect would be silently lost
            raise RuntimeError(f"FastDecoder would skip the forward hooks on {hooked[:3]}; step the decoder with "
                               "model.sampling.TransformersSteps instead")
        rows, dtype = hidden.shape[0], self.dtype
        hidden = hidden.to(dtype)
        # additive mask [N, 1, 1, L]; a fully masked (null) row attends evenly to zero states: output 0, as in HF
        self.cross_mask = ((1.0 - mask.to(dtype)) * torch.finfo(dtype).min)[:, None, None, :]
        self.cache = []
        for layer in self.layers:
            cross_k, cross_v = map(self._heads, layer["xkv"](hidden).chunk(2, dim=-1))  # [N, H, L, hd] each
            self_k = hidden.new_zeros(rows, self.num_heads, steps, self.dim // self.num_heads)
            self.cache.append((cross_k, cross_v, self_k, torch.zeros_like(self_k)))
        if steps > self.positions.shape[0]:
            from transformers.models.musicgen.modeling_musicgen import MusicgenSinusoidalPositionalEmbedding

            self.positions = MusicgenSinusoidalPositionalEmbedding.get_embedding(steps, self.dim).to(hidden.device)
        self.positions = self.positions.to(device=hidden.device, dtype=dtype)
        self.length = 0
        self.aligned = None if aligned is None else aligned.to(dtype)  # [N, S, D] time-aligned term (model/aligned.py)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens long [N, K] at the next position -> logits float32 [N, K, V]."""
        t = self.length
        x = sum(table[tokens[:, k]].to(self.dtype) for k, table in enumerate(self.embeddings)) + self.positions[t]
        if self.aligned is not None:
            x = x + self.aligned[:, min(t, self.aligned.shape[1] - 1)]
        x = x[:, None]  # [N, 1, D]
        for layer, (cross_k, cross_v, self_k, self_v) in zip(self.layers, self.cache):
            q, k, v = map(self._heads, layer["qkv"](layer["norm1"](x)).to(x.dtype).chunk(3, dim=-1))  # [N, H, 1, hd]
            self_k[:, :, t:t + 1], self_v[:, :, t:t + 1] = k, v
            a = F.scaled_dot_product_attention(q, self_k[:, :, :t + 1], self_v[:, :, :t + 1])
            x = x + layer["o"](a.transpose(1, 2).flatten(2))
            q = self._heads(layer["xq"](layer["norm2"](x)))
            a = F.scaled_dot_product_attention(q, cross_k, cross_v, attn_mask=self.cross_mask)
            x = x + layer["xo"](a.transpose(1, 2).flatten(2))
            x = x + layer["fc2"](F.gelu(layer["fc1"](layer["norm3"](x))))
        self.length = t + 1
        logits = self.heads(self.final_norm(x.to(self.final_norm.weight.dtype))[:, 0]).float()  # [N, K * V]
        return logits.unflatten(-1, (len(self.embeddings), -1))

    def finish(self) -> None:
        """Free the caches (their size grows with the length: ~0.4 MB per step at the small size with guidance)."""
        self.cache, self.cross_mask, self.aligned = [], None, None
