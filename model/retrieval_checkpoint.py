"""The folder format of the video-music embedding head (``model/video_music_embedding.py``).

    config.json           {"format": "video-music-embedding", "format_version": 1, "embedding": <EmbeddingConfig>,
                           "encoders": {"semantic": <SemanticConfig>, "motion": <MotionConfig>}, "training": {...}}
    model.safetensors     the head's weights (both towers and the temperature)
    semantic.safetensors  the frozen image tower whose features the head was trained on (random-init demo tower)
    README.md             the model card

The encoders travel with the head because the head only understands features made by them: the command extracts the
query video's features with exactly these settings. Tensors come only from safetensors (no pickle), and a stored
config cannot point a weights file outside its folder.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from common.files import atomic_write_text, replace_folder
from model.checkpoint import check_state, inside, read_trainable, read_versioned_meta
from model.config import ConfigError, MotionConfig, SemanticConfig, config_from_dict
from model.errors import CheckpointError
from model.video_music_embedding import EmbeddingConfig, VideoMusicEmbedding

FORMAT = "video-music-embedding"
VERSION = 1
CONFIG_NAME, WEIGHTS_NAME, CARD_NAME = "config.json", "model.safetensors", "README.md"
SEMANTIC_NAME = "semantic.safetensors"


def save_head(head: VideoMusicEmbedding, folder: str | Path, semantic: SemanticConfig, motion: MotionConfig,
              training: dict | None = None, card: str | None = None) -> None:
    """Write the head and its encoders' settings as a folder, built beside ``folder`` and swapped in whole."""
    semantic_dict = dataclasses.asdict(semantic)
    with replace_folder(folder) as new:
        if semantic.weights:
            shutil.copyfile(semantic.weights, new / SEMANTIC_NAME)
            semantic_dict["weights"] = SEMANTIC_NAME
        meta = {"format": FORMAT, "format_version": VERSION, "embedding": head.config.to_dict(),
                "encoders": {"semantic": semantic_dict, "motion": dataclasses.asdict(motion)},
                "training": training or {}}
        atomic_write_text(new / CONFIG_NAME, json.dumps(meta, indent=2) + "\n")
        state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
        save_file(state, str(new / WEIGHTS_NAME), metadata={"format": FORMAT})
        atomic_write_text(new / CARD_NAME, card or f"# Video-music embedding head\n\n{json.dumps(training or {})}\n")


def read_meta(folder: Path) -> dict:
    return read_versioned_meta(folder, FORMAT, VERSION, "not a video-music embedding folder")


def load_head(folder: str | Path, device: str | torch.device = "cpu") -> VideoMusicEmbedding:
    """The head stored in ``folder``, in eval mode on ``device`` (strict key and shape checks)."""
    folder = Path(folder)
    meta = read_meta(folder)
    try:
        config = EmbeddingConfig(**meta["embedding"])
        head = VideoMusicEmbedding(config)
    except (TypeError, ValueError, KeyError) as error:
        raise CheckpointError(f"{folder / CONFIG_NAME}: bad embedding config ({error})") from None
    state = read_trainable(folder / WEIGHTS_NAME)
    check_state(state, head.state_dict(), str(folder / WEIGHTS_NAME))
    head.load_state_dict(state)
    return head.to(device).eval()


def load_encoder_configs(folder: str | Path) -> tuple[SemanticConfig, MotionConfig]:
    """The settings of the video encoders the head was trained on (weights resolved inside ``folder``)."""
    folder = Path(folder)
    encoders = read_meta(folder).get("encoders") or {}
    try:
        config = config_from_dict({"semantic": dict(encoders["semantic"]), "motion": dict(encoders["motion"])})
    except (KeyError, ValueError, TypeError, ConfigError) as error:
        raise CheckpointError(f"{folder / CONFIG_NAME}: bad encoder settings ({error})") from None
    semantic, motion = config.semantic, config.motion
    if semantic.weights:
        semantic.weights = inside(folder, semantic.weights, "image encoder")
    return semantic, motion


def head_fingerprint(folder: str | Path) -> str:
    """A short hash of the head's config and weights: library embeddings made by another head are not reused."""
    folder = Path(folder)
    digest = hashlib.sha1()
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:16]
