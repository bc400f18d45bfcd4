"""Names of cached features: every setting that changes a kind of feature goes into its key, so features made
with another preset are never mistaken for this one's.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from common.errors import UserError
from data.schema import MUSIC_SAMPLE_RATE, feature_key
from model.config import V2MConfig

KINDS = ("semantic", "motion", "codes")
CACHE_DIR = "features"
SWAP_NEW, SWAP_OLD = ".features_new", ".features_old"  # the dataset being swapped in, and the one it replaces
COMPLETE = "COMPLETE"


class FeaturesError(UserError):
    """A dataset or config that cannot be used; the message is one line meant for the user."""




def codec_sample_rate(config: V2MConfig) -> int:
    """The rate music is fed to the codec: the configured one (spectral or random-init codec), else EnCodec's 32 kHz."""
    decoder = config.decoder
    if decoder.codec is not None:
        return int(decoder.codec.get("sample_rate", MUSIC_SAMPLE_RATE))
    return int((decoder.random_init or {}).get("codec", {}).get("sampling_rate", MUSIC_SAMPLE_RATE))


def feature_settings(config: V2MConfig) -> dict[str, dict]:
    """Everything that changes each kind of feature.

    Fields are listed by exclusion (only those known not to matter are left out), so a field added to a config
    section later changes the key rather than silently reusing stale features. Weight files named in the config
    add a fingerprint of their content: refitting a codec in place must not reuse old codes.
    """
    semantic = {k: v for k, v in dataclasses.asdict(config.semantic).items() if k != "batch_size"}
    semantic["weights"] = _file_stamp(semantic["weights"])  # the file's content, wherever it lies
    codes = {k: v for k, v in dataclasses.asdict(config.decoder).items()
             if k not in ("quantization", "compute_dtype", "gradient_checkpointing")}  # the codec stays float32
    if codes["codec"] is not None:  # a codec of its own: the decoder (base, random_init) does not change codes
        codes = {"codec": {**codes["codec"], "weights": _file_stamp(codes["codec"].get("weights"))}}
    codes["sample_rate"] = codec_sample_rate(config)
    return {"semantic": semantic, "motion": dataclasses.asdict(config.motion), "codes": codes}


def _file_stamp(path: str | None) -> str | None:
    """A weights file's content fingerprint; a missing file keeps its path (building the model will fail anyway)."""
    if not path:
        return None
    return f"sha1:{media_stamp(Path(path))}" if Path(path).is_file() else str(path)


def feature_keys(config: V2MConfig) -> dict[str, str]:
    return {kind: feature_key(kind, settings) for kind, settings in feature_settings(config).items()}


def feature_columns(config: V2MConfig) -> dict[str, str]:
    """Column names of this config's features: semantic, semantic_times, motion, motion_times, codes."""
    keys = feature_keys(config)
    return {"semantic": f"semantic__{keys['semantic']}", "semantic_times": f"semantic_times__{keys['semantic']}",
            "motion": f"motion__{keys['motion']}", "motion_times": f"motion_times__{keys['motion']}",
            "codes": f"codes__{keys['codes']}"}




def media_stamp(path: Path, chunk: int = 1 << 16) -> str:
    """Cheap fingerprint of a media file (size + first and last 64 KiB): changes when the clip is remade."""
    size = path.stat().st_size
    digest = hashlib.sha1(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(chunk))
        f.seek(max(0, size - chunk))
        digest.update(f.read(chunk))
    return digest.hexdigest()[:16]
