"""Training batches from a clip dataset (``data/schema.py``) whose features are cached, through a ``DataLoader``.

Each row gives cached video features and audio codes (``data.features`` computes them; training never runs a frozen
encoder). A training example is a random ``clip_seconds`` crop of a clip, the same crop for features and codes.
Batches depend only on (seed, micro-step, process): ``StepBatches`` is a map-style dataset indexed by micro-step, so
a resumed run, or any number of ``DataLoader`` workers, yields exactly the batches of an uninterrupted run.

    Batch: features FeatureBatch [B, T*, D*], codes long [B, K, T], lengths [B], near_event bool [B, T],
           frame_weights float [B, T] (beat-weighted loss) or None, captions: B strings or Nones (the clips'
           ``caption`` column; None on a version-1 dataset), read by a model with a text encoder;
           with the contrastive sync term: music / music_shifted float [B, 4 S, F], the crop's music frames
           (``model/music_features.py``, 40 Hz, S = 0.1 s steps) and the same music half a beat earlier or later
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from common.errors import UserError
from media.audio import read_audio
from model.features import FeatureBatch, VideoFeatures


class DatasetError(UserError):
    """A dataset folder that cannot be used for training; one line for the user."""


@dataclass
class Example:
    features: VideoFeatures
    codes: torch.Tensor  # [K, T] long
    event_times: torch.Tensor  # [E] seconds of known cuts/impacts (synthetic ground truth; empty elsewhere)
    frame_weights: torch.Tensor | None = None  # [T] beat-weighted loss weights (training/beat_weights.py), if used
    caption: str | None = None  # the clip's text prompt (data/schema.py ``caption``)
    music_frames: torch.Tensor | None = None  # [T40, F] the whole clip's music frames (contrastive sync term)
    beat: float | None = None  # seconds per beat: the row's tempo, else librosa's estimate


def load_split(dataset_dir: str | Path, split: str):
    """The ``split`` of a saved DatasetDict, checking the schema version first."""
    from datasets import load_from_disk

    from data.schema import check_schema

    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise DatasetError(f"{dataset_dir}: dataset folder not found")
    try:
        info = check_schema(dataset_dir)
        if info.get("do_not_train"):  # data.heldout_events: measuring sync on unseen videos needs them unseen
            raise DatasetError(f"{dataset_dir}: a held-out {info.get('source', '')} set, never for training or model "
                               "selection (score on it with eval.py and tools/event_hits.py)")
        return load_from_disk(str(dataset_dir))[split]
    except (ValueError, FileNotFoundError, KeyError) as error:
        raise DatasetError(f"{dataset_dir}: cannot read split {split!r} ({error})") from None


class ClipSource:
    """Examples of one split read from the cached feature ``columns``: ``example(i)`` is the whole clip.

    Rows are read lazily and kept (a ``DataLoader`` worker keeps its own); the beat-weighted loss reads the clip's
    music for its onsets (CPU work that the workers do).
    """

    def __init__(self, dataset_dir: str | Path, split: str, columns: dict, frame_rate: int, sample_rate: int,
                 beat_alpha: float | None = None, beat_delta: float = 0.1, lead_in_seconds: float = 0.0,
                 music_frames: bool = False):
        self.dir = Path(dataset_dir)
        self.music_frames = music_frames
        self.lead_in_frames = round(lead_in_seconds * frame_rate)
        self.rows = load_split(self.dir, split)
        self.columns, self.frame_rate, self.sample_rate = columns, frame_rate, sample_rate
        self.beat_alpha, self.beat_delta = beat_alpha, beat_delta
        self.memory: dict[int, Example] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def example(self, index: int) -> Example:
        if index not in self.memory:
            self.memory[index] = self._read(index)
        return self.memory[index]

    def _read(self, index: int) -> Example:
        from data.features import row_features
        from data.schema import row_caption

        row = self.rows[index]
        features, codes = row_features(row, self.columns)
        example = Example(features, codes.long(), torch.tensor(row.get("event_times") or [], dtype=torch.float32),
                          caption=row_caption(row))
        if self.beat_alpha is not None or self.music_frames:
            wav = read_audio(self.dir / row["music_path"], self.sample_rate)[0]
        if self.beat_alpha is not None:
            example.frame_weights = self._frame_weights(wav, features, codes.shape[-1])
        if self.music_frames:
            from model.music_features import music_features

            example.music_frames = torch.from_numpy(music_features(wav, self.sample_rate))
            example.beat = 60.0 / (row.get("tempo") or _tempo(wav, self.sample_rate))
        return example

    def _frame_weights(self, wav: np.ndarray, features: VideoFeatures, frames: int) -> torch.Tensor:
        from training.beat_weights import frame_weights, music_onsets, video_beats

        onsets = music_onsets(wav, self.sample_rate, self.frame_rate, frames)
        beats = video_beats(features, self.frame_rate, frames, self.beat_delta)
        return frame_weights(onsets, beats, round(self.beat_delta * self.frame_rate), self.beat_alpha)


def _tempo(wav: np.ndarray, sample_rate: int) -> float:
    """librosa's beat-tracker tempo in BPM; 120 when it finds none (a clip without a beat has no half-beat shift
    that means anything, and any shift is still a wrong alignment)."""
    import librosa

    tempo = float(np.atleast_1d(librosa.beat.beat_track(y=np.asarray(wav, np.float32), sr=sample_rate)[0])[0])
    return tempo if tempo > 0 else 120.0


def crop_start(example: Example, seconds: float, frame_rate: int, generator: torch.Generator | None) -> int:
    """The first code frame of a ``seconds`` crop: random and whole (at the start when ``generator`` is None)."""
    total = example.codes.shape[-1]
    length = min(total, max(1, round(seconds * frame_rate)))
    if generator is not None and total > length:
        return int(torch.randint(0, total - length + 1, (1,), generator=generator))
    return 0


MUSIC_FRAMES_PER_STEP = 4  # model/music_features.py's 40 Hz frames per 0.1 s step of the embedding head


def music_crops(example: Example, start: int, frame_rate: int, steps: int,
                generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The crop's music frames [4 steps, F] from code frame ``start``, and the same length starting half a beat
    earlier or later (the side drawn from ``generator``; the other when the first leaves the clip). Frames past
    the clip's end are zeros."""
    from model.music_features import FRAME_RATE

    frames = example.music_frames
    size = steps * MUSIC_FRAMES_PER_STEP
    first = round(start / frame_rate * FRAME_RATE)
    delta = max(1, round(0.5 * example.beat * FRAME_RATE))
    sign = 1 if generator is None else int(torch.randint(0, 2, (1,), generator=generator)) * 2 - 1
    if not 0 <= first + sign * delta <= max(0, frames.shape[0] - size):
        sign = -sign
    shifted = min(max(0, first + sign * delta), max(0, frames.shape[0] - 1))

    def window(at: int) -> torch.Tensor:
        out = torch.zeros(size, frames.shape[1])
        part = frames[at:at + size]
        out[: part.shape[0]] = part
        return out

    return window(first), window(shifted)


def crop(example: Example, seconds: float, frame_rate: int, generator: torch.Generator | None,
         lead_in_frames: int = 0, start: int | None = None
         ) -> tuple[VideoFeatures, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A ``seconds`` crop at a random whole code frame (at the start when ``generator`` is None).

    Returns features, codes [K, T], a bool [T] marking code frames within one frame of a known event, and the
    crop's beat-weighted loss weights [T] (None when the source computes none). The first ``lead_in_frames`` of
    the crop weigh 1 (``train.lead_in_seconds``): with no music before them, only the video can tell the decoder
    where the first beats fall and how fast they come, so that is where the tempo is learnt from the video.
    ``start``: the first code frame, when ``crop_start`` already drew it.
    """
    total = example.codes.shape[-1]
    length = min(total, max(1, round(seconds * frame_rate)))
    if start is None:
        start = crop_start(example, seconds, frame_rate, generator)
    features = example.features.crop(start / frame_rate, length / frame_rate)
    frames = torch.arange(start, start + length)
    event_frames = (example.event_times * frame_rate).round()
    near_event = (frames[:, None] - event_frames[None, :]).abs().le(1).any(dim=1) if len(event_frames) else \
        torch.zeros(length, dtype=torch.bool)
    weights = None if example.frame_weights is None else example.frame_weights[start:start + length]
    if weights is not None and lead_in_frames > 0:
        weights = weights.clone()
        weights[:lead_in_frames] = 1.0
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
    captions: tuple[str | None, ...] | None = None  # one text prompt (or None) per clip
    music: torch.Tensor | None = None  # [B, 4 S, F] each crop's music frames (contrastive sync term)
    music_shifted: torch.Tensor | None = None  # [B, 4 S, F] the same music half a beat off

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """Every tensor of the batch on ``device`` (one call, so nothing is left behind on the CPU)."""
        def move(value):
            movable = isinstance(value, (torch.Tensor, FeatureBatch))  # captions (strings) stay as they are
            return value.to(device, non_blocking=non_blocking) if movable else value

        return Batch(*(move(getattr(self, f.name)) for f in fields(self)))

    def pin_memory(self) -> "Batch":
        """Page-locked copies (``DataLoader(pin_memory=True)`` calls this), for asynchronous copies to a GPU."""
        pinnable = (torch.Tensor, FeatureBatch)
        return Batch(*(v.pin_memory() if isinstance(v := getattr(self, f.name), pinnable) else v
                       for f in fields(self)))

    def step_weights(self, num_codebooks: int) -> torch.Tensor | None:
        """The frame weights laid out like the delayed labels, [B, K, T + K - 1]; None for the plain loss."""
        if self.frame_weights is None:
            return None
        from training.beat_weights import delayed_weights

        return delayed_weights(self.frame_weights, num_codebooks, self.codes.shape[-1] + num_codebooks - 1)


def make_batch(source: ClipSource, indices: list[int], seconds: float, frame_rate: int,
               collate: Callable[[list[VideoFeatures]], FeatureBatch], generator: torch.Generator | None) -> Batch:
    """Crops of the given rows, padded into one batch (on the CPU)."""
    lead_in = source.lead_in_frames if generator is not None else 0  # validation: the plain loss
    crops, music = [], []
    for i in indices:
        example = source.example(i)
        start = crop_start(example, seconds, frame_rate, generator)
        crops.append(crop(example, seconds, frame_rate, generator, lead_in, start))
        if getattr(source, "music_frames", False):  # sources built elsewhere (bench, tests) have none
            steps = max(1, int(crops[-1][1].shape[-1] / frame_rate * 10))  # whole 0.1 s steps of this crop
            music.append((start, steps))
    lengths = torch.tensor([codes.shape[-1] for _, codes, *_ in crops])
    codes = torch.zeros(len(crops), crops[0][1].shape[0], int(lengths.max()), dtype=torch.long)
    near_event = torch.zeros(len(crops), int(lengths.max()), dtype=torch.bool)
    weighted = all(w is not None for *_, w in crops)
    weights = torch.ones(len(crops), int(lengths.max())) if weighted else None
    for b, (_, c, events, w) in enumerate(crops):
        codes[b, :, : c.shape[-1]], near_event[b, : c.shape[-1]] = c, events
        if weighted:
            weights[b, : c.shape[-1]] = w
    captions = tuple(source.example(i).caption for i in indices)
    aligned = shifted = None
    if music:
        steps = min(s for *_, s in music)  # one length for the batch: the shortest crop's
        pairs = [music_crops(source.example(i), start, frame_rate, steps, generator)
                 for i, (start, _) in zip(indices, music)]
        aligned, shifted = torch.stack([a for a, _ in pairs]), torch.stack([b for _, b in pairs])
    return Batch(collate([f for f, *_ in crops]), codes, lengths, near_event, weights,
                 captions if any(captions) else None, aligned, shifted)


class StepBatches(Dataset):
    """Training micro-batches ``first, first + 1, ...`` of one process, item i = micro-step ``first + i``.

    ``crop_seed`` makes the random crops depend on the micro-step and process only.
    """

    def __init__(self, source: ClipSource, batch_size: int, seconds: float, collate, seed: int, first: int, last: int,
                 rank: int = 0, world: int = 1):
        self.source, self.batch_size, self.seconds, self.collate = source, batch_size, seconds, collate
        self.seed, self.first, self.last, self.rank, self.world = seed, first, last, rank, world

    def __len__(self) -> int:
        return max(0, self.last - self.first)

    def __getitem__(self, index: int) -> Batch:
        micro_step = self.first + index
        indices = batch_indices(micro_step, self.batch_size, len(self.source), self.seed, self.rank, self.world)
        crops = torch.Generator().manual_seed(self.seed * 7919 + micro_step * 131 + self.rank)
        return make_batch(self.source, indices, self.seconds, self.source.frame_rate, self.collate, crops)


class ValidationBatches(Dataset):
    """This process's share of the validation split, ``batch_size`` clips at a time, crops at the clip start."""

    def __init__(self, source: ClipSource, batch_size: int, seconds: float, collate, rank: int = 0, world: int = 1):
        rows = list(range(rank, len(source), world))
        self.chunks = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
        self.source, self.seconds, self.collate = source, seconds, collate

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index: int) -> Batch:
        return make_batch(self.source, self.chunks[index], self.seconds, self.source.frame_rate, self.collate, None)


def _as_is(item):
    return item


def loader(dataset: Dataset, num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """A ``DataLoader`` over ready-made batches (``batch_size=None``): ``num_workers`` build them ahead, in order.

    It gets a generator of its own: by default a ``DataLoader`` draws its workers' base seed from torch's global
    RNG when iterated, which would shift every later dropout mask of a resumed run."""
    return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers, pin_memory=pin_memory,
                      collate_fn=_as_is, persistent_workers=False, generator=torch.Generator().manual_seed(0))
