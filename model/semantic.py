"""Semantic stream: a frozen open_clip image encoder, one token per sampled frame (mood, scene, long range)."""
from __future__ import annotations

import contextlib
import logging

import numpy as np
import open_clip
import torch
from safetensors.torch import load_file
from torch import nn

from model.config import SemanticConfig


class SemanticEncoder(nn.Module):
    """Frozen CLIP image tower.  frames uint8 [N, S, S, 3] (RGB, already centre-cropped) -> embeddings [N, D].

    Frames arrive at the model's input size from ``media.video.sample_frames``, so preprocessing here is only
    scaling to [0, 1] and CLIP's mean/std normalisation, batched on tensors (no PIL round trip per frame).
    """

    def __init__(self, clip_model: nn.Module, image_size: int, mean: tuple, std: tuple, batch_size: int = 16):
        super().__init__()
        self.visual = clip_model.visual
        self.image_size = image_size
        self.batch_size = batch_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    @property
    def dim(self) -> int:
        return int(self.visual.output_dim)

    def train(self, mode: bool = True) -> "SemanticEncoder":
        return super().train(False)  # frozen: always in eval mode (no dropout)

    @torch.no_grad()
    def forward(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 [N, S, S, 3] -> L2-normalised float32 [N, D] on the encoder's device."""
        device, dtype = self.mean.device, self.tower_dtype
        frames = torch.as_tensor(frames)
        if frames.shape[0] == 0:
            return torch.zeros(0, self.dim, device=device)
        outputs = []
        for chunk in frames.split(self.batch_size):
            pixels = chunk.to(device).permute(0, 3, 1, 2).float().div(255.0)  # [n, 3, S, S], moved as uint8
            pixels = (pixels - self.mean.float()) / self.std.float()
            outputs.append(nn.functional.normalize(self.visual(pixels.to(dtype)).float(), dim=-1))
        return torch.cat(outputs)

    @property
    def tower_dtype(self) -> torch.dtype:
        """The image tower's storage dtype (``common.device``: bf16 / fp16 / fp32); pixels are cast to it."""
        return next(self.visual.parameters()).dtype


@contextlib.contextmanager
def _without_open_clip_random_init_warning(loaded_next: bool):
    """open_clip warns "No pretrained weights loaded ... initialized randomly" on the root logger; for a tower whose
    own weights are loaded right after (the demo model's), that line would tell the user the opposite of the truth."""
    if not loaded_next:
        yield
        return
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def build_semantic_encoder(cfg: SemanticConfig) -> SemanticEncoder:
    """open_clip model from ``model_name`` + ``pretrained`` tag (downloads once), or a randomly initialised one (``cfg.random_init``)."""
    if cfg.random_init is not None:
        with _without_open_clip_random_init_warning(loaded_next=cfg.weights is not None):
            model = open_clip.create_model(cfg.model_name, pretrained=None, **cfg.random_init)
    else:
        model = open_clip.create_model(cfg.model_name, pretrained=cfg.pretrained)
    if cfg.weights is not None:  # frozen image tower stored with a model that is not on the Hub (demo)
        model.visual.load_state_dict(load_file(cfg.weights))
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    mean = getattr(model.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
    std = getattr(model.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
    return SemanticEncoder(model, size, tuple(mean), tuple(std), cfg.batch_size)
