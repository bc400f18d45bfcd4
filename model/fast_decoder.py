"""An inference-only view of the MusicGen decoder (+ LoRA) for cached sampling: static KV cache, one call per step.

Why: transformers' decoder forward spends each 1-token step on cache objects, mask builders and module hooks, and
keeps every weight in fp32. Here a step is the bare computation — embeddings, 24 x (self-attention over a
preallocated cache, cross-attention over keys/values computed once, feed-forward), heads — reading the decoder's
own weights (no copy in ``float32``, so it always matches the live model; LoRA applied as in peft). At one token per
row each step reads every weight once, so on a CPU its cost is memory traffic: the opt-in ``bfloat16`` and ``int8``
precisions store the layers' linear weights in 2 or 1 byte (LoRA merged first; int8 = per-channel weights with
dynamic per-row activation quantization, fbgemm). Embeddings, heads, layer norms, attention and the cache stay fp32.

    tokens [N, K] (step t) --embed + position t--> x [N, D] --layers--> logits [N, K, V]      N = rows (2B with CFG)

Only plain ``nn.Linear`` bases are supported (not bitsandbytes 4/8-bit ones): ``supports(decoder)`` says which.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

PRECISIONS = ("float32", "bfloat16", "int8")


def _base_model(decoder: nn.Module) -> nn.Module:
    """The ``MusicgenForCausalLM`` inside a peft wrapper (or the decoder itself)."""
    return decoder.get_base_model() if hasattr(decoder, "get_base_model") else decoder


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


def supports(decoder: nn.Module) -> bool:
    """True when every projection of ``decoder`` is a plain ``nn.Linear`` (possibly under vanilla LoRA)."""
    try:
        for layer in _base_model(decoder).model.decoder.layers:
            for module in _layer_modules(layer).values():
                _parts(module)
    except NotImplementedError:
        return False
    return True


def _layer_modules(layer: nn.Module) -> dict[str, nn.Module]:
    s, c = layer.self_attn, layer.encoder_attn
    return {"q": s.q_proj, "k": s.k_proj, "v": s.v_proj, "o": s.out_proj, "xq": c.q_proj, "xk": c.k_proj,
            "xv": c.v_proj, "xo": c.out_proj, "fc1": layer.fc1, "fc2": layer.fc2}


class Linear:
    """y = x W^T (+ b) (+ LoRA) with W stored in ``precision``; x and y are float32 [..., in] -> [..., out]."""

    def __init__(self, module: nn.Module, precision: str = "float32"):
        base, self.lora = _parts(module)
        self.bias, self.precision = base.bias, precision
        if precision == "float32":
            self.weight = base.weight  # the live parameter: no copy, no drift after training steps
            return
        weight = base.weight.detach().float()
        for a, b, scaling in self.lora:  # merge, then round once
            weight = weight + scaling * (b.float() @ a.float())
        self.lora = []
        if precision == "bfloat16":
            self.weight = weight.bfloat16()
        elif precision == "int8":
            scale = weight.abs().amax(dim=1).clamp_min(1e-12) / 127.0  # per output channel
            q = torch.quantize_per_channel(weight, scale.double(), torch.zeros_like(scale, dtype=torch.long), 0,
                                           torch.qint8)
            self.weight = torch.ops.quantized.linear_prepack(q, None if self.bias is None else self.bias.detach().float())
            self.bias = None
        else:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.precision == "int8":
            return torch.ops.quantized.linear_dynamic(x, self.weight, True)  # reduce_range, as fbgemm's default
        if self.precision == "bfloat16":
            return F.linear(x.bfloat16(), self.weight, None if self.bias is None else self.bias.bfloat16()).float()
        y = F.linear(x, self.weight, self.bias)
        for a, b, scaling in self.lora:  # same order of operations as peft: base + B(A(x)) * scaling
            y = y + F.linear(F.linear(x, a), b) * scaling
        return y


class FastDecoder:
    """``start(hidden, mask, steps)`` once, then ``step(tokens)`` per generated step -> logits.

    Built from a ``MusicgenForCausalLM`` (optionally peft-wrapped) in eval mode; holds no state between
    generations except the cache it reallocates in ``start``.
    """

    def __init__(self, decoder: nn.Module, precision: str = "float32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        base = _base_model(decoder)
        inner, config = base.model.decoder, base.config
        self.precision = precision
        self.num_heads, self.head_dim = config.num_attention_heads, config.hidden_size // config.num_attention_heads
        self.embeddings = [e.weight for e in inner.embed_tokens]  # K x [V+1, D]
        self.positions = inner.embed_positions.weights  # [P, D] sinusoids
        self.layers = [self._layer(layer, precision) for layer in inner.layers]
        self.final_norm = inner.layer_norm
        self.heads = [head.weight for head in base.lm_heads]  # K x [V, D], fp32 (small, sensitive)
        self.cache: list[tuple[torch.Tensor, ...]] = []

    @staticmethod
    def _layer(layer: nn.Module, precision: str) -> dict:
        modules = _layer_modules(layer)
        out = {name: Linear(m, precision if name not in ("xk", "xv") else "float32") for name, m in modules.items()}
        out.update(norm1=layer.self_attn_layer_norm, norm2=layer.encoder_attn_layer_norm, norm3=layer.final_layer_norm)
        return out

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """[N, T, D] -> [N, H, T, hd]."""
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    @torch.no_grad()
    def start(self, hidden: torch.Tensor, mask: torch.Tensor, steps: int) -> None:
        """Encoder states [N, L, D] with mask [N, L]; allocate the self-attention cache for ``steps`` tokens."""
        rows, dim = hidden.shape[0], hidden.shape[-1]
        hidden = hidden.float()
        # additive mask [N, 1, 1, L]; a fully masked (null) row attends uniformly to zero states, giving 0 as in HF
        self.cross_mask = ((1.0 - mask.float()) * torch.finfo(torch.float32).min)[:, None, None, :]
        self.cache = []
        for layer in self.layers:
            cross_k, cross_v = self._heads(layer["xk"](hidden)), self._heads(layer["xv"](hidden))  # [N, H, L, hd]
            self_k = hidden.new_zeros(rows, self.num_heads, steps, self.head_dim)
            self.cache.append((cross_k, cross_v, self_k, torch.zeros_like(self_k)))
        if steps > self.positions.shape[0]:
            from transformers.models.musicgen.modeling_musicgen import MusicgenSinusoidalPositionalEmbedding as Sin

            self.positions = Sin.get_embedding(steps, dim).to(hidden.device)
        self.length = 0

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens long [N, K] at the next position -> logits float32 [N, K, V]."""
        t = self.length
        x = sum(table[tokens[:, k]] for k, table in enumerate(self.embeddings)) + self.positions[t]  # [N, D]
        x = x[:, None]  # [N, 1, D]
        for layer, (cross_k, cross_v, self_k, self_v) in zip(self.layers, self.cache):
            h = layer["norm1"](x)
            self_k[:, :, t:t + 1] = self._heads(layer["k"](h))
            self_v[:, :, t:t + 1] = self._heads(layer["v"](h))
            a = F.scaled_dot_product_attention(self._heads(layer["q"](h)), self_k[:, :, :t + 1], self_v[:, :, :t + 1])
            x = x + layer["o"](a.transpose(1, 2).flatten(2))
            h = layer["norm2"](x)
            a = F.scaled_dot_product_attention(self._heads(layer["xq"](h)), cross_k, cross_v, attn_mask=self.cross_mask)
            x = x + layer["xo"](a.transpose(1, 2).flatten(2))
            x = x + layer["fc2"](F.gelu(layer["fc1"](layer["norm3"](x))))
        x = self.final_norm(x)[:, 0]  # [N, D]
        self.length = t + 1
        return torch.stack([F.linear(x, head) for head in self.heads], dim=1)  # [N, K, V]
