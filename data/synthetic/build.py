"""Making a synthetic clip dataset: clips rendered (in parallel, resumable), rows with their ground truth, the
``datasets.DatasetDict`` of ``data/schema.py`` saved beside the media.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pretty_midi
from tqdm import tqdm

from common.files import OwnedFolder
from data.captions import caption_from_truth
from data.schema import MUSIC_SAMPLE_RATE, SPLITS, clip_features, write_schema_file
from data.splits import DEFAULT_FRACTIONS, assign_splits
from data.synthetic.music import render_music, resolve_renderer
from data.synthetic.spec import (DEFAULT_SOUNDFONT, GENERATOR_VERSION, KEY_NAMES, ClipSpec, SyntheticError,
                                 sample_clip_spec)
from data.synthetic.video import render_frames
from media.audio import write_wav
from media.video_writer import write_mp4

if TYPE_CHECKING:  # imported lazily: datasets is slow to import and the command line should fail fast
    from datasets import DatasetDict


def _partial(path: Path) -> Path:
    """Where a file is written before being renamed into place, so a file under its real name is complete."""
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def media_paths(out_dir: Path, spec_id: str) -> tuple[Path, Path]:
    return out_dir / "clips" / f"{spec_id}.mp4", out_dir / "music" / f"{spec_id}.wav"


def make_clip(spec: ClipSpec, out_dir: str | Path, renderer: str = "auto",
              soundfont: str | Path = DEFAULT_SOUNDFONT) -> None:
    """Write ``music/<id>.wav`` then ``clips/<id>.mp4`` (with the music muxed in), each by atomic rename."""
    video_path, music_path = media_paths(Path(out_dir), spec.id)
    audio = render_music(spec, renderer, soundfont)
    write_wav(music_path, audio, MUSIC_SAMPLE_RATE)
    write_mp4(_partial(video_path), render_frames(spec), spec.width, spec.height, spec.fps, audio, MUSIC_SAMPLE_RATE)
    _partial(video_path).replace(video_path)


def clip_is_done(out_dir: str | Path, spec_id: str) -> bool:
    """Both files exist under their real names (they only get them when complete)."""
    return all(path.is_file() for path in media_paths(Path(out_dir), spec_id))


def clip_row(spec: ClipSpec, caption_seed: int = 0) -> dict:
    """The dataset row of a clip (``data/schema.py``), ground truth included, and a caption built from it
    (``data/captions.py``, train phrasings, chosen by (``caption_seed``, clip id))."""
    key, instrument = KEY_NAMES[spec.key], pretty_midi.program_to_instrument_name(spec.program)
    row = {
        "id": spec.id, "video_id": spec.id, "video_path": f"clips/{spec.id}.mp4", "music_path": f"music/{spec.id}.wav",
        "start": 0.0, "duration": float(spec.seconds),
        "title": f"synthetic {spec.mood} scene, {key} {spec.mode}, {instrument}, {spec.bpm:g} BPM",
        "tags": ["synthetic", spec.mood, spec.mode, instrument],
        "event_times": [float(t) for t in spec.event_times()], "beat_times": [float(t) for t in spec.beat_times],
        "tempo": float(spec.bpm), "key": key, "mode": spec.mode, "program": int(spec.program),
    }
    return {**row, "caption": caption_from_truth(row, caption_seed)}


def build_dataset(specs: list[ClipSpec], fractions: tuple[float, ...], seed: int) -> DatasetDict:
    """A ``datasets.DatasetDict`` with every split present (possibly empty), rows in clip order."""
    from datasets import Dataset, DatasetDict

    features, splits = clip_features(), assign_splits([spec.id for spec in specs], fractions, seed)
    columns = {}
    for name in SPLITS:  # from column lists, not from_list: an empty split still gets its columns
        rows = [clip_row(spec, seed) for spec in specs if splits[spec.id] == name]
        columns[name] = {column: [row[column] for row in rows] for column in features}
    return DatasetDict({name: Dataset.from_dict(columns[name], features=features) for name in SPLITS})


OUTPUTS = ("clips", "music", *SPLITS, "dataset_dict.json", "schema.json")  # what this tool writes in --out


def prepare_out_dir(out_dir: Path, params: dict, overwrite: bool, tool: str = "data.synthetic",
                    error: type[Exception] = SyntheticError) -> None:
    """Start, resume (same settings only) or, with ``overwrite``, restart a run of ``tool`` in ``out_dir`` (see
    ``OwnedFolder``); half-written media of a killed run are removed. The held-out set's command uses it too."""
    folder = OwnedFolder(out_dir, tool, error)
    folder.prepare(params, overwrite)
    folder.claim(*OUTPUTS)
    for name in ("clips", "music"):
        (out_dir / name).mkdir(parents=True, exist_ok=True)
        for leftover in (out_dir / name).glob("*.partial.*"):
            leftover.unlink()


def render_clips(make, todo: list, total: int, out_dir: Path, renderer: str, soundfont: str | Path, workers: int,
                 desc: str, progress: bool) -> None:
    """``make(spec, out_dir, renderer, soundfont)`` for each spec of ``todo``, under one progress bar over all
    ``total`` clips (the finished ones counted in). Clips are independent, so ``workers`` > 1 renders them in
    spawned processes in any order (``make`` must be a module-level function, to be pickled)."""
    bar = tqdm(total=total, initial=total - len(todo), desc=desc, unit="clip", disable=not progress)
    if workers > 1 and len(todo) > 1:
        import functools
        import multiprocessing

        render = functools.partial(make, out_dir=out_dir, renderer=renderer, soundfont=soundfont)
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(render, todo):
                bar.update()
    else:
        for spec in todo:
            make(spec, out_dir, renderer, soundfont)
            bar.update()
    bar.close()


def generate(out_dir: str | Path, n: int, seconds: float, seed: int, fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
             height: int = 128, fps: int = 24, renderer: str = "auto", soundfont: str | Path = DEFAULT_SOUNDFONT,
             overwrite: bool = False, progress: bool = True, workers: int = 1) -> DatasetDict:
    """Make (or resume) a synthetic clip dataset of ``n`` clips in ``out_dir``; returns the ``DatasetDict``.

    Clips are independent (clip k depends only on the seed and k), so ``workers`` processes render them in any
    order and the result is the same as with one."""
    out_dir, renderer = Path(out_dir), resolve_renderer(renderer, soundfont)
    params = {"generator_version": GENERATOR_VERSION, "seed": seed, "seconds": seconds, "fps": fps, "height": height,
              "renderer": renderer, "soundfont": str(soundfont) if renderer == "fluidsynth" else None}
    prepare_out_dir(out_dir, params, overwrite)
    specs = [sample_clip_spec(seed, index, seconds, fps, height) for index in range(n)]
    todo = [spec for spec in specs if not clip_is_done(out_dir, spec.id)]
    render_clips(make_clip, todo, len(specs), out_dir, renderer, soundfont, workers, "synthetic clips", progress)
    dataset = build_dataset(specs, fractions, seed)
    for name in SPLITS:  # stale shards of an earlier save must not survive
        shutil.rmtree(out_dir / name, ignore_errors=True)
    # One shard per split: datasets 5.2 saves an empty split with zero shards and then cannot load it back.
    dataset.save_to_disk(str(out_dir), num_shards={name: 1 for name in SPLITS})
    write_schema_file(out_dir, "synthetic", n=n, splits=dict(zip(SPLITS, fractions)),
                      width=specs[0].width if specs else None, sample_rate=MUSIC_SAMPLE_RATE, **params)
    return dataset
