"""Running a curation (or merging the parts of a sharded one) into an output folder that it owns.
"""
from __future__ import annotations

import multiprocessing
import shutil
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from common.files import OwnedFolder
from data.curate.dataset import save_dataset
from data.curate.one_video import curate_video, init_pool_worker, init_worker, unload_models
from data.curate.options import (CURATE_VERSION, FEATURE_SWAP_DIRS, FEATURES_CACHE, PARAMS_FILE, REASONS, RECORDS_DIR,
                                 REJECTED_FILE, ClipOptions, CurateError)
from data.curate.records import load_records, record_is_final
from data.schema import SPLITS
from data.sources import SourceVideo, find_sources, in_shard
from data.splits import DEFAULT_FRACTIONS


def out_folder(out_dir: Path) -> OwnedFolder:
    return OwnedFolder(out_dir, "data.curate", CurateError, marker=PARAMS_FILE)


def prepare_out_dir(out_dir: Path, params: dict, overwrite: bool) -> None:
    """Start, resume or, with ``overwrite``, restart a curation in ``out_dir`` (see ``common.files.OwnedFolder``).

    Resuming with other clip settings is refused once a clip was made with the old ones; ``overwrite`` deletes
    only what curation wrote (and the feature cache built on its clips), never other files in the folder.
    """
    folder = out_folder(out_dir)
    made = (out_dir / RECORDS_DIR).is_dir() and any((out_dir / RECORDS_DIR).glob("*.json"))
    folder.prepare(params, overwrite, changed_ok=not made or overwrite)
    folder.claim("clips", "music", RECORDS_DIR, FEATURES_CACHE, *FEATURE_SWAP_DIRS)
    for name in ("clips", "music", RECORDS_DIR):
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    for name in ("clips", "music"):
        for leftover in (out_dir / name).glob("*.partial.*"):
            leftover.unlink()
    for leftover in (out_dir / RECORDS_DIR).glob(".*.tmp"):
        leftover.unlink()


def run_videos(todo: list[SourceVideo], out_dir: Path, options: ClipOptions, workers: int, progress: bool) -> None:
    """Curate ``todo`` with ``workers`` processes (in this process when 1); records are committed as they finish."""
    tasks = [(source, str(out_dir), options) for source in todo]
    load_models(options)  # here first, so a missing model stops the run with one line (a pool would retry forever)
    bar = tqdm(total=len(tasks), desc="curate", unit="video", disable=not progress)
    if workers == 1:
        for task in tasks:
            curate_video(task)
            bar.update()
    else:  # spawn: no fork of a process that already runs torch threads
        unload_models()
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=init_pool_worker, initargs=(options,), maxtasksperchild=200) as pool:
            for _ in pool.imap_unordered(curate_video, tasks, chunksize=1):
                bar.update()
    bar.close()


def load_models(options: ClipOptions) -> None:
    """``init_worker`` in this process, with a one-line ``CurateError`` when a model cannot be loaded."""
    from data.vocals import VocalsError

    try:
        init_worker(options)
    except VocalsError as error:
        raise CurateError(str(error)) from None
    except Exception as error:  # open_clip / the Hub raise many types when weights cannot be fetched
        first = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise CurateError(f"cannot load the semantic encoder {options.semantic.model_name!r} "
                          f"({options.semantic.pretrained}) used to find static video: {first}") from None


def curate(input_path: Path, out_dir: Path, options: ClipOptions, fractions=DEFAULT_FRACTIONS, seed: int = 0,
           workers: int = 1, shard: tuple[int, int] | None = None, overwrite: bool = False,
           allow_outside: bool = False, progress: bool = True) -> dict:
    """Curate (or resume) ``input_path`` into ``out_dir``; returns a summary (see ``print_summary``)."""
    started = time.monotonic()
    sources = find_sources(input_path, allow_outside, exclude=out_dir)
    if shard is not None:
        sources = [s for s in sources if in_shard(s.id, shard)]
    prepare_out_dir(out_dir, {"curate_version": CURATE_VERSION, **options.params()}, overwrite)
    records = load_records(out_dir)
    todo = [s for s in sources if s.id not in records or not record_is_final(records[s.id])]
    if todo:
        run_videos(todo, out_dir, options, min(workers, len(todo)), progress)
    made = load_records(out_dir)
    clips_made = sum(len(made[s.id]["clips"]) for s in todo if s.id in made)
    dataset, rejected = save_dataset(out_dir, fractions, seed, {"input": str(input_path), "shard": shard})
    return {"out": out_dir, "dataset": dataset, "rejected": rejected, "processed": len(todo), "clips_made": clips_made,
            "skipped": len(sources) - len(todo), "seconds": time.monotonic() - started}


def merge(out_dir: Path, parts: list[Path], fractions=DEFAULT_FRACTIONS, seed: int = 0, overwrite: bool = False) -> dict:
    """Join curated parts (``--shard`` runs) into ``out_dir``: copy their media, records and feature caches, rebuild."""
    started = time.monotonic()
    params = [_part_params(part) for part in parts]
    if any(p != params[0] for p in params[1:]):
        raise CurateError("the parts were curated with different settings; they cannot be merged")
    prepare_out_dir(out_dir, params[0], overwrite)
    merged = load_records(out_dir)
    for part in parts:
        for video_id, record in load_records(part).items():
            other = merged.get(video_id)
            if other is not None and other.get("fingerprint") != record.get("fingerprint"):
                raise CurateError(f"video id {video_id!r} is in two parts with different files ({other['path']}, {record['path']})")
            _copy_part_files(part, out_dir, record)
            merged[video_id] = record
        _copy_tree_new(part / FEATURES_CACHE, out_dir / FEATURES_CACHE)
    dataset, rejected = save_dataset(out_dir, fractions, seed, {"merged_from": [str(p) for p in parts]})
    return {"out": out_dir, "dataset": dataset, "rejected": rejected, "processed": 0, "clips_made": 0,
            "skipped": len(merged), "seconds": time.monotonic() - started}


def _part_params(part: Path) -> dict:
    marker = out_folder(part).read_marker()
    if marker is None or not (part / RECORDS_DIR).is_dir():
        raise CurateError(f"{part} is not a folder written by data.curate (no {PARAMS_FILE} or {RECORDS_DIR}/)")
    return marker["params"]


def _copy_part_files(part: Path, out_dir: Path, record: dict) -> None:
    """Media first (renamed into place), then the record: the same commit order as curation itself."""
    for clip in record["clips"]:
        for key in ("video_path", "music_path"):
            _copy_file(part / clip[key], out_dir / clip[key])
    tmp = out_dir / RECORDS_DIR / f".{record['video_id']}.json.tmp"
    shutil.copyfile(part / RECORDS_DIR / f"{record['video_id']}.json", tmp)
    tmp.replace(out_dir / RECORDS_DIR / f"{record['video_id']}.json")


def _copy_file(source: Path, target: Path) -> None:
    if not source.is_file():
        raise CurateError(f"{source} is named by a record but missing; re-run that part's curation first")
    if target.is_file() and target.stat().st_size == source.stat().st_size:
        return  # copied by an earlier, interrupted merge
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.stem}.partial{target.suffix}")
    shutil.copy2(source, tmp)
    tmp.replace(target)


def _copy_tree_new(source: Path, target: Path) -> None:
    if source.is_dir():
        for path in source.rglob("*"):
            if path.is_file() and path.suffix == ".npz":  # not a temporary file of a killed run
                _copy_file(path, target / path.relative_to(source))


def print_summary(summary: dict) -> None:
    dataset, rejected = summary["dataset"], summary["rejected"]
    sizes = " / ".join(f"{name} {len(dataset[name])}" for name in SPLITS)
    videos = len({v for name in SPLITS for v in dataset[name]["video_id"]})
    print(f"\n{summary['out']}: {sum(len(dataset[n]) for n in SPLITS)} clips from {videos} videos ({sizes}); "
          f"{len(rejected)} rejected (details in {REJECTED_FILE})")
    if rejected:
        counts = Counter(entry["reason"] for entry in rejected)
        print(f"  {'reason':<14} {'count':>5}  meaning")
        for reason, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            print(f"  {reason:<14} {count:>5}  {REASONS.get(reason, '')}")
    minutes = summary["seconds"] / 60
    rate = (f" ({summary['processed'] / minutes:.1f} videos/min, {summary['clips_made'] / minutes:.1f} clips/min)"
            if summary["processed"] and minutes > 0 else "")
    print(f"  this run: {summary['processed']} videos processed into {summary['clips_made']} clips, "
          f"{summary['skipped']} already done, {summary['seconds']:.1f} s{rate}")
