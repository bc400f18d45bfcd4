"""The time-aligned additive condition (DESIGN.md §9) delivered into the decoder's input embeddings.

MusicGen's decoder sums its codebook embeddings into one input vector per step; this adds ``aligned[:, s]`` (the
video near time s / frame_rate, see ``TemporalFusion``) to step s's vector by a forward hook on the first codebook's
embedding table. Why a hook: transformers 5.23's ``MusicgenDecoder`` derives positions from ``inputs_embeds`` in a
way that gives every token the same position, so passing ready-made ``inputs_embeds`` is not an option.

The hook keeps an offset, so the same code serves a teacher-forced pass over S steps and a cached sampling loop
that feeds one step at a time.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from model.decoder import base_model


def first_codebook_embedding(decoder: nn.Module) -> nn.Embedding:
    """The embedding table of codebook 0 inside a (possibly peft-wrapped) ``MusicgenForCausalLM``."""
    return base_model(decoder).model.decoder.embed_tokens[0]


@contextlib.contextmanager
def aligned_injection(decoder: nn.Module, aligned: torch.Tensor | None):
    """Within the block, decoder steps get ``aligned`` [N, S, D] added, step by step from step 0."""
    if aligned is None:
        yield
        return
    state = {"offset": 0}

    def add(module, inputs, output):  # output [N, s, D] for the next s steps
        steps = output.shape[1]
        start = state["offset"]
        extra = aligned[:, start:start + steps]
        if extra.shape[1] < steps:  # past the end: repeat the last step's value
            extra = torch.cat([extra, aligned[:, -1:].expand(-1, steps - extra.shape[1], -1)], dim=1)
        state["offset"] = start + steps
        return output + extra.to(output.dtype)

    handle = first_codebook_embedding(decoder).register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()
