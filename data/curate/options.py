"""What decides a curated clip (``ClipOptions``), the reason codes of rejections, and the run's constants.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from common.errors import UserError
from model.config import SemanticConfig

CURATE_VERSION = 2  # bump when the same options would make different clips
PARAMS_FILE = "curate_params.json"
REJECTED_FILE = "rejected.jsonl"
RECORDS_DIR = "records"
FEATURES_CACHE = "features"  # data.features' per-clip cache: stale once clips are remade
FEATURE_SWAP_DIRS = (".features_new", ".features_old")  # data.features.SWAP_NEW / SWAP_OLD
LENGTH_TOLERANCE = 0.1  # seconds a source may fall short of a window and still count (frame rounding)
AUDIO_TOLERANCE = 0.25  # seconds of missing audio at a window's end that are padded with silence (codec priming)
FFMPEG_TIMEOUT = 900  # seconds for one cut
REASONS = {
    "missing": "file not found",
    "empty_file": "zero-byte file",
    "unreadable": "not a readable video",
    "truncated": "file or stream cut off before its stated end",
    "no_video": "no video stream",
    "no_audio": "no audio stream",
    "too_short": "shorter than one clip",
    "static_video": "too little visual change (CLIP frame similarity above, or frame difference below, the limit)",
    "silent_music": "music below the RMS level limit",
    "duplicate": "same file content as another input video",
    "failed": "unexpected error (retried on the next run)",
}


class CurateError(UserError):
    """A problem with the run as a whole (not one file); the message is one line meant for the user."""


class Rejection(Exception):
    """Why a file or clip is left out: ``reason`` is a code from ``REASONS``, the message is for people."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(frozen=True)
class ClipOptions:
    """Everything that changes what a curated clip is; stored beside the dataset and checked on resume."""

    semantic: SemanticConfig
    clip_seconds: float = 30.0
    windows: bool = False
    max_windows: int = 0  # 0: as many as fit
    max_frame_similarity: float = 0.7  # with a trained image tower (CLIP)
    min_frame_change: float = 0.01  # with an untrained one: mean |frame difference| / 255 of sampled frames
    similarity_fps: float = 1.0
    keep_vocals: bool = False
    demucs_model: str = "htdemucs"
    min_rms_db: float = -45.0
    max_height: int = 360  # 0 keeps the source size
    max_bad_packets: int = 10  # audio packets the decoder may refuse per clip (each about 20-30 ms) before rejection
    threads: int = field(default=1, compare=False)
    device: str = field(default="cpu", compare=False)  # where CLIP judges static video (common.device)
    precision: str = field(default="fp32", compare=False)

    def params(self) -> dict:
        """The settings that change clips (not where or how fast they are computed)."""
        params = asdict(self)
        for name in ("threads", "device", "precision"):
            params.pop(name)
        return params
