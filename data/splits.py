"""Deterministic train/test/validation assignment by video id, shared by ``data.synthetic`` and ``data.curate``.

Why hash each id on its own: the split of a video must not move when other videos are added, removed or
reordered (a dataset grown from 1,000 to 2,000 clips keeps every old clip in its old split, so a model never
meets a former test video in training). The price is that split sizes only follow the fractions on average: with
few videos a split can come out empty, which the schema allows.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence

from data.schema import SPLITS

DEFAULT_FRACTIONS = (0.7, 0.2, 0.1)


def parse_fractions(text: str) -> tuple[float, float, float]:
    """Read ``"0.7,0.2,0.1"`` (train,test,validation); raise ``ValueError`` with a one-line reason otherwise."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"splits must be numbers like 0.7,0.2,0.1, got {text!r}") from None
    check_fractions(values)
    return values  # type: ignore[return-value]


def check_fractions(fractions: Sequence[float]) -> None:
    """Refuse fractions that cannot describe the three splits, naming the offending value."""
    if len(fractions) != len(SPLITS):
        raise ValueError(f"splits need {len(SPLITS)} fractions ({','.join(SPLITS)}), got {list(fractions)}")
    if any(not math.isfinite(f) or f < 0 for f in fractions):
        raise ValueError(f"split fractions must be finite and non-negative, got {list(fractions)}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {list(fractions)} (sum {sum(fractions):g})")


def id_position(video_id: str, seed: int) -> float:
    """A uniform number in [0, 1) that depends only on (seed, video_id): the id's place on the split line."""
    digest = hashlib.sha256(f"{seed}\x00{video_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(video_id: str, fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0) -> str:
    """The split of one video id: where its position falls on the cumulative fractions."""
    position, edge = id_position(video_id, seed), 0.0
    for name, fraction in zip(SPLITS, fractions):
        edge += fraction
        if position < edge:
            return name
    return next(name for name, f in reversed(list(zip(SPLITS, fractions))) if f > 0)  # rounding at the top end


def assign_splits(video_ids: Iterable[str], fractions: Sequence[float] = DEFAULT_FRACTIONS,
                  seed: int = 0) -> dict[str, str]:
    """Map each video id to "train", "test" or "validation" (fractions in that order; see the module docstring)."""
    check_fractions(fractions)
    return {video_id: split_of(video_id, fractions, seed) for video_id in video_ids}
