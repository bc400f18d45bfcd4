"""Curate the user's own videos into a clip dataset (DESIGN.md section 4; the layout is ``data/schema.py``).

    python -m data.curate --input VIDEOS_OR_MANIFEST --out DATASET_DIR [--config small] [--workers 4]
    python -m data.curate --input VIDEOS --out PART_i --shard i/N        # on N machines, i = 0 .. N-1
    python -m data.curate merge --out DATASET_DIR PART_0 PART_1 ...      # then join the parts

Each input file is probed, cut to its first ``--clip-seconds`` (or consecutive windows with ``--windows``),
filtered (static video by CLIP frame similarity as in VMAs, near-silent music), its vocals are removed with Demucs
(``--keep-vocals`` skips that), and its music is resampled to 32 kHz mono (``data/curate/one_video.py`` does one video).
Every rejected file gets a reason code in ``rejected.jsonl``; a summary table prints at the end.

Resuming: each finished video commits ``records/<video_id>.json`` after its media are in place, so a run killed
at any point and started again skips finished videos and redoes the rest; the Arrow dataset is rebuilt from the
records at the end. An existing ``--out`` is resumed (and extended with new inputs), never overwritten, unless
``--overwrite`` is given; resuming with settings that change clips is refused.
Splits are by video id (``data/splits.py``): clips of one video, and copies of one file, share a split.
"""
from data.curate.clip_media import cut_video, write_clip_media
from data.curate.command import main, parse_args
from data.curate.dataset import build_dataset, push_to_hub, save_dataset
from data.curate.one_video import curate_video, mean_pairwise_similarity
from data.curate.options import REASONS, ClipOptions, CurateError, Rejection
from data.curate.probe import clip_windows, iso_structure_problem, probe_source
from data.curate.records import load_records
from data.curate.run import curate, merge

__all__ = ["REASONS", "ClipOptions", "CurateError", "Rejection", "build_dataset", "clip_windows", "curate",
           "curate_video", "cut_video", "iso_structure_problem", "load_records", "main", "mean_pairwise_similarity",
           "merge", "parse_args", "probe_source", "push_to_hub", "save_dataset", "write_clip_media"]
