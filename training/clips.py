"""Training batches from a clip dataset (``data/schema.py``), deterministic by step so a resumed run sees the same data.

Each row gives video features and audio codes: read from cached columns when ``data.features`` has added them
for this config, else computed once per clip (one decode, both streams, the codec) and kept in memory.
A training example is a random ``clip_seconds`` crop of a clip, the same crop for features and codes.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from model.features import FeatureBatch, VideoFeatures


class DatasetError(ValueError):
    """A dataset folder that cannot be used for training; one line for the user."""


@dataclass
class Example:
    features: VideoFeatures
    codes: torch.Tensor  # [K, T] long
    event_times: torch.Tensor  # [E] seconds of known cuts/impacts (synthetic ground truth; empty elsewhere)
    frame_weights: torch.Tensor | None = None  # [T] beat-weighted loss weights (training/beat_weights.py), if used


def load_split(dataset_dir: str | Path, split: str):
    """The ``split`` of a saved DatasetDict, checking the schema version first."""
    from datasets import load_from_disk

    from data.schema import check_schema

    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise DatasetError(f"{dataset_dir}: dataset folder not found")
    try:
        check_schema(dataset_dir)
        return load_from_disk(str(dataset_dir))[split]
    except (ValueError, FileNotFoundError, KeyError) as error:
        raise DatasetError(f"{dataset_dir}: cannot read split {split!r} ({error})") from None


def read_music(path: Path, sample_rate: int) -> torch.Tensor:
    """WAV -> float32 [1, 1, S] mono at ``sample_rate`` (resampled with soxr via librosa if needed)."""
    wav, rate = sf.read(str(path), dtype="float32", always_2d=True)
    wav = wav.mean(axis=1)
    if rate != sample_rate:
        import librosa

        wav = librosa.resample(wav, orig_sr=rate, target_sr=sample_rate)
    return torch.from_numpy(np.ascontiguousarray(wav))[None, None]


class ClipSource:
    """Examples of one split: ``example(i)`` returns the whole clip's features and codes."""

    def __init__(self, dataset_dir: str | Path, split: str, model, log=print, beat_alpha: float | None = None,
                 beat_delta: float = 0.1):
        self.dir = Path(dataset_dir)
        self.beat_alpha, self.beat_delta = beat_alpha, beat_delta
        self.rows = load_split(self.dir, split)
        self.model = model
        self.memory: dict[int, Example] = {}
        self.cached = self._cached_columns()
        if len(self.rows):
            log(f"{split}: {len(self.rows)} clips, features "
                + ("from the cache" if self.cached else "computed on the fly (cache them with python -m data.features)"))

    def _cached_columns(self):
        try:
            from data.features import cached_columns
        except ImportError:
            return None
        return cached_columns(self.rows, self.model.config)

    def __len__(self) -> int:
        return len(self.rows)

    def example(self, index: int) -> Example:
        if index not in self.memory:
            self.memory[index] = self._read(index)
        return self.memory[index]

    def _read(self, index: int) -> Example:
        row, music = self.rows[index], None
        if self.cached:
            from data.features import row_features

            features, codes = row_features(row, self.cached)
        else:
            seconds = float(row["duration"])
            features = self.model.extract_features(self.dir / row["video_path"], start=0.0, max_seconds=seconds)
            music = read_music(self.dir / row["music_path"], self.model.sample_rate)
            codes = self.model.codec.encode(music)[0]  # [K, T]
        example = Example(features, codes.long(), _events(row))
        if self.beat_alpha is not None:
            if music is None:
                music = read_music(self.dir / row["music_path"], self.model.sample_rate)
            example.frame_weights = self._frame_weights(music[0, 0].numpy(), features, codes.shape[-1])
        return example

    def _frame_weights(self, wav: np.ndarray, features: VideoFeatures, frames: int) -> torch.Tensor:
        from training.beat_weights import frame_weights, music_onsets, video_beats

        rate = self.model.frame_rate
        onsets = music_onsets(wav, self.model.sample_rate, rate, frames)
        beats = video_beats(features, rate, frames, self.beat_delta)
        return frame_weights(onsets, beats, round(self.beat_delta * rate), self.beat_alpha)


def _events(row: dict) -> torch.Tensor:
    return torch.tensor(row.get("event_times") or [], dtype=torch.float32)


def crop(example: Example, seconds: float, frame_rate: int,
         generator: torch.Generator | None) -> tuple[VideoFeatures, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A ``seconds`` crop at a random whole code frame (at the start when ``generator`` is None).

    Returns features, codes [K, T], a bool [T] marking code frames within one frame of a known event, and the
    crop's beat-weighted loss weights [T] (None when the source computes none).
    """
    total = example.codes.shape[-1]
    length = min(total, max(1, round(seconds * frame_rate)))
    start = 0
    if generator is not None and total > length:
        start = int(torch.randint(0, total - length + 1, (1,), generator=generator))
    features = example.features.crop(start / frame_rate, length / frame_rate)
    frames = torch.arange(start, start + length)
    event_frames = (example.event_times * frame_rate).round()
    near_event = (frames[:, None] - event_frames[None, :]).abs().le(1).any(dim=1) if len(event_frames) else \
        torch.zeros(length, dtype=torch.bool)
    weights = None if example.frame_weights is None else example.frame_weights[start:start + length]
    return features, example.codes[:, start:start + length], near_event, weights


def batch_indices(micro_step: int, batch_size: int, size: int, seed: int, rank: int = 0, world: int = 1) -> list[int]:
    """Row indices for one micro-step on one process: epochs are seeded permutations, processes take disjoint slices.

    Depends only on its arguments, so a resumed run (or another process) computes the same batches.
    """
    first = micro_step * batch_size * world + rank * batch_size
    return [int(_permutation(size, seed, position // size)[position % size]) for position in range(first, first + batch_size)]


@functools.lru_cache(maxsize=4)
def _permutation(size: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


@dataclass
class Batch:
    features: FeatureBatch
    codes: torch.Tensor  # [B, K, T] long, zero-padded
    lengths: torch.Tensor  # [B] real frames
    near_event: torch.Tensor  # [B, T] bool, code frames within one frame of a known event
    frame_weights: torch.Tensor | None = None  # [B, T] beat-weighted loss weights (padding: 1, not scored)

    def step_weights(self, num_codebooks: int) -> torch.Tensor | None:
        """The frame weights laid out like the delayed labels, [B, K, T + K - 1]; None for the plain loss."""
        if self.frame_weights is None:
            return None
        from training.beat_weights import delayed_weights

        return delayed_weights(self.frame_weights, num_codebooks, self.codes.shape[-1] + num_codebooks - 1)


def make_batch(source: ClipSource, indices: list[int], seconds: float, model,
               generator: torch.Generator | None) -> Batch:
    """Crops of the given rows, padded into one batch."""
    crops = [crop(source.example(i), seconds, model.frame_rate, generator) for i in indices]
    lengths = torch.tensor([codes.shape[-1] for _, codes, *_ in crops])
    codes = torch.zeros(len(crops), crops[0][1].shape[0], int(lengths.max()), dtype=torch.long)
    near_event = torch.zeros(len(crops), int(lengths.max()), dtype=torch.bool)
    weighted = all(w is not None for *_, w in crops)
    weights = torch.ones(len(crops), int(lengths.max())) if weighted else None
    for b, (_, c, events, w) in enumerate(crops):
        codes[b, :, : c.shape[-1]], near_event[b, : c.shape[-1]] = c, events
        if weighted:
            weights[b, : c.shape[-1]] = w
    return Batch(model.collate([f for f, *_ in crops]), codes, lengths, near_event, weights)
