"""Curate the user's own videos into a clip dataset (DESIGN.md section 4; the layout is ``data/schema.py``).

    python -m data.curate --input VIDEOS_OR_MANIFEST --out DATASET_DIR [--config small] [--workers 4]
    python -m data.curate --input VIDEOS --out PART_i --shard i/N        # on N machines, i = 0 .. N-1
    python -m data.curate merge --out DATASET_DIR PART_0 PART_1 ...      # then join the parts

Each input file is probed, cut to its first ``--clip-seconds`` (or consecutive windows with ``--windows``),
filtered (static video by CLIP frame similarity as in VMAs, near-silent music), its vocals are removed with Demucs
(``--keep-vocals`` skips that), and its music is resampled to 32 kHz mono (``data/clips.py`` does one video).
Every rejected file gets a reason code in ``rejected.jsonl``; a summary table prints at the end.

Resuming: each finished video commits ``records/<video_id>.json`` after its media are in place, so a run killed
at any point and started again skips finished videos and redoes the rest; the Arrow dataset is rebuilt from the
records at the end. An existing ``--out`` is resumed (and extended with new inputs), never overwritten, unless
``--overwrite`` is given; resuming with settings that change clips is refused.
Splits are by video id (``data/splits.py``): clips of one video, and copies of one file, share a split.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from data.clips import (RECORDS_DIR, REASONS, ClipOptions, Rejection, curate_video, init_pool_worker, init_worker,
                        record_is_final, rejected_entry, unload_models)
from data.schema import MUSIC_SAMPLE_RATE, SPLITS, clip_features, write_schema_file
from data.sources import InputError, SourceVideo, find_sources, in_shard, parse_shard
from data.splits import DEFAULT_FRACTIONS, assign_splits, parse_fractions

CURATE_VERSION = 1  # bump when the same options would make different clips
PARAMS_FILE = "curate_params.json"
REJECTED_FILE = "rejected.jsonl"
FEATURES_CACHE = "features"  # data.features' per-clip cache: stale once clips are remade
FEATURE_SWAP_DIRS = (".features_new", ".features_old")  # data.features.SWAP_NEW / SWAP_OLD


class CurateError(ValueError):
    """A problem with the run as a whole (not one file); the message is one line meant for the user."""


# ---------------------------------------------------------------------------------------------------- output folder


def prepare_out_dir(out_dir: Path, params: dict, overwrite: bool) -> None:
    """Start, resume (same clip settings only) or, with ``overwrite``, restart a curation in ``out_dir``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CurateError(f"--out {out_dir} is a file, not a folder")
    if overwrite and out_dir.is_dir():
        remove_outputs(out_dir)
    elif out_dir.is_dir() and any(out_dir.iterdir()):
        check_params(out_dir, params)
    for name in ("clips", "music", RECORDS_DIR):
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    for name in ("clips", "music"):
        for leftover in (out_dir / name).glob("*.partial.*"):
            leftover.unlink()
    for leftover in (out_dir / RECORDS_DIR).glob(".*.tmp"):
        leftover.unlink()
    write_json_atomic(out_dir / PARAMS_FILE, params)


def check_params(out_dir: Path, params: dict) -> None:
    """Resume only with the settings that made the clips already there (nothing made yet: anything goes)."""
    marker = out_dir / PARAMS_FILE
    if not marker.is_file():
        raise CurateError(f"--out {out_dir} is not empty and was not made by data.curate; pass --overwrite or choose another folder")
    old = json.loads(marker.read_text())
    changed = sorted(k for k in params.keys() | old.keys() if old.get(k) != params.get(k))
    if changed and any((out_dir / RECORDS_DIR).glob("*.json")):
        what = ", ".join(f"{k} {old.get(k)!r} -> {params.get(k)!r}" if not isinstance(params.get(k), dict)
                         else f"{k} (changed)" for k in changed)
        raise CurateError(f"--out {out_dir} was curated with other settings ({what}); pass --overwrite or choose another folder")


def remove_outputs(out_dir: Path) -> None:
    """Delete only what curation (and the feature cache built on it) writes, never anything else in the folder."""
    for name in ("clips", "music", RECORDS_DIR, FEATURES_CACHE, *FEATURE_SWAP_DIRS, *SPLITS):
        if (out_dir / name).is_dir():
            shutil.rmtree(out_dir / name)
    for name in ("dataset_dict.json", "schema.json", PARAMS_FILE, REJECTED_FILE):
        (out_dir / name).unlink(missing_ok=True)


def write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def load_records(out_dir: Path) -> dict[str, dict]:
    """Committed records by video id (a torn or foreign file in ``records/`` is ignored and its video redone)."""
    records = {}
    for path in sorted((out_dir / RECORDS_DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text())
            records[record["video_id"]] = record
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return records


# ---------------------------------------------------------------------------------------------------- running


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


# ---------------------------------------------------------------------------------------------------- dataset


def select_records(records: dict[str, dict]) -> tuple[list[dict], list[dict]]:
    """(records whose clips enter the dataset, extra rejections): copies of one file keep only the first id."""
    kept, duplicates, first_of = [], [], {}
    for video_id in sorted(records):
        record = records[video_id]
        original = first_of.setdefault(record["fingerprint"], video_id) if record["fingerprint"] else video_id
        if original != video_id and record["clips"]:
            source = SourceVideo(record["path"], video_id)
            message = f"{record['path']}: same content as video {original!r} ({records[original]['path']})"
            duplicates.append(rejected_entry(source, video_id, Rejection("duplicate", message)))
        else:
            kept.append(record)
    return kept, duplicates


def build_dataset(kept: list[dict], fractions, seed: int):
    """A ``datasets.DatasetDict`` (every split present, possibly empty) of the kept clips, rows sorted by id."""
    from datasets import Dataset, DatasetDict

    rows = sorted((clip for record in kept for clip in record["clips"]), key=lambda row: row["id"])
    ids = [row["id"] for row in rows]
    if len(set(ids)) != len(ids):
        clash = next(i for i in ids if ids.count(i) > 1)
        raise CurateError(f"clip id {clash!r} comes from two videos; rename one (manifest 'id') and re-run")
    features = clip_features()
    splits = assign_splits(sorted({row["video_id"] for row in rows}), fractions, seed)
    columns = {}
    for name in SPLITS:  # from column lists: an empty split still gets its columns
        chosen = [row for row in rows if splits[row["video_id"]] == name]
        columns[name] = {column: [row.get(column) for row in chosen] for column in features}
    return DatasetDict({name: Dataset.from_dict(columns[name], features=features) for name in SPLITS})


def remove_orphan_media(out_dir: Path, records: dict[str, dict]) -> int:
    """Delete clips/music files no record names (left by a run killed mid-video whose input then went away)."""
    named = {Path(clip[key]).name for record in records.values() for clip in record["clips"]
             for key in ("video_path", "music_path")}
    orphans = [p for folder in ("clips", "music") for p in (out_dir / folder).iterdir() if p.name not in named]
    for path in orphans:
        path.unlink()
    return len(orphans)


def save_dataset(out_dir: Path, fractions, seed: int, extra: dict):
    """Rebuild the Arrow dataset, ``rejected.jsonl`` and ``schema.json`` from every record in ``out_dir``.

    Feature columns are dropped with the old table: ``data.features`` re-attaches them from its cache (new clips
    are the only ones it computes).
    """
    import datasets

    records = load_records(out_dir)
    kept, duplicates = select_records(records)
    dataset = build_dataset(kept, fractions, seed)
    rejected = sorted([e for r in records.values() for e in r["rejected"]] + duplicates, key=lambda e: (e["path"], e["id"]))
    remove_orphan_media(out_dir, records)
    # Stale shards of an earlier save, and a feature-column swap data.features left unfinished, must not survive.
    for name in (*SPLITS, *FEATURE_SWAP_DIRS):
        shutil.rmtree(out_dir / name, ignore_errors=True)
    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # saving a few small tables is not worth three bars
    # One shard per split: datasets 5.2 saves an empty split with zero shards and then cannot load it back.
    dataset.save_to_disk(str(out_dir), num_shards={name: 1 for name in SPLITS})
    if enabled:
        datasets.enable_progress_bars()
    tmp = out_dir / f".{REJECTED_FILE}.tmp"
    tmp.write_text("".join(json.dumps(entry) + "\n" for entry in rejected))
    tmp.replace(out_dir / REJECTED_FILE)
    write_schema_file(out_dir, "curate", version=CURATE_VERSION, splits=dict(zip(SPLITS, fractions)), seed=seed,
                      sample_rate=MUSIC_SAMPLE_RATE, videos=len(kept), clips=sum(len(dataset[s]) for s in SPLITS),
                      rejected=len(rejected), **extra)
    return dataset, rejected


# ---------------------------------------------------------------------------------------------------- commands


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
    if not (part / PARAMS_FILE).is_file() or not (part / RECORDS_DIR).is_dir():
        raise CurateError(f"{part} is not a folder written by data.curate (no {PARAMS_FILE} or {RECORDS_DIR}/)")
    return json.loads((part / PARAMS_FILE).read_text())


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


def push_to_hub(out_dir: Path, dataset, repo_id: str, private: bool = False) -> None:
    """Share the dataset: the Arrow table via ``DatasetDict.push_to_hub``, then the media it points to."""
    from huggingface_hub import HfApi

    dataset.push_to_hub(repo_id, private=private)
    HfApi().upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(out_dir),
                          allow_patterns=["clips/*", "music/*", "schema.json", REJECTED_FILE, PARAMS_FILE],
                          commit_message="Add curated clips and music")


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


# ---------------------------------------------------------------------------------------------------- command line


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line gets one error line (pointing at --help), not the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="dataset folder (resumed if it exists)")
    parser.add_argument("--splits", default=",".join(map(str, DEFAULT_FRACTIONS)), help="train,test,validation fractions")
    parser.add_argument("--seed", type=int, default=0, help="split seed (>= 0)")
    parser.add_argument("--overwrite", action="store_true", help="delete this tool's earlier output in --out first")
    parser.add_argument("--push-to-hub", metavar="REPO", help="also upload the dataset and its media to this Hub dataset repo")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def curate_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m data.curate", description=__doc__.split("\n\n")[0],
                                     epilog="merge: python -m data.curate merge --out DATASET_DIR PART_DIR ...")
    parser.add_argument("--input", required=True, type=Path, help="folder of videos (searched recursively) or a .csv/.jsonl manifest")
    _common_args(parser)
    parser.add_argument("--config", default="small", help="preset name or YAML whose semantic encoder judges static video (default small)")
    parser.add_argument("--clip-seconds", type=_positive_float, default=30.0, help="clip length (default 30)")
    parser.add_argument("--windows", action="store_true", help="cut consecutive windows instead of only the first clip")
    parser.add_argument("--max-windows", type=int, default=0, help="at most this many windows per video (0: no limit)")
    parser.add_argument("--max-frame-similarity", type=_positive_float, default=0.7,
                        help="reject clips whose mean pairwise CLIP frame similarity is above this (default 0.7, as VMAs)")
    parser.add_argument("--similarity-fps", type=_positive_float, default=1.0, help="frames per second compared for that test (default 1; at least 4 frames per clip)")
    parser.add_argument("--keep-vocals", action="store_true", help="skip vocal removal (Demucs)")
    parser.add_argument("--demucs-model", default="htdemucs", help="Demucs model for vocal removal (default htdemucs)")
    parser.add_argument("--min-rms-db", type=float, default=-45.0, help="reject music quieter than this RMS level in dBFS (default -45)")
    parser.add_argument("--max-height", type=int, default=360, help="scale clips down to at most this height (default 360; 0 keeps the source size)")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--shard", help="curate only part i of N (i/N, 0-based): run one per machine, then merge")
    parser.add_argument("--allow-outside", action="store_true", help="let a manifest name files outside its folder")
    return parser


def merge_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m data.curate merge", description="join curated parts into one dataset")
    parser.add_argument("parts", nargs="+", type=Path, help="folders written by data.curate --shard")
    _common_args(parser)
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse and check the command line; bad values exit with one argparse-style error line."""
    is_merge = bool(argv) and argv[0] == "merge"
    parser = merge_parser() if is_merge else curate_parser()
    args = parser.parse_args(argv[1:] if is_merge else argv)
    args.command = "merge" if is_merge else "curate"
    try:
        args.splits = parse_fractions(args.splits)
    except ValueError as error:
        parser.error(f"--splits: {error}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if not is_merge:
        _check_curate_args(parser, args)
    return args


def _check_curate_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from model.config import ConfigError, load_config

    problems = [
        (args.clip_seconds > 3600, f"--clip-seconds must be at most 3600, got {args.clip_seconds:g}"),
        (args.workers < 1, f"--workers must be >= 1, got {args.workers}"),
        (args.max_windows < 0, f"--max-windows must be >= 0, got {args.max_windows}"),
        (args.max_frame_similarity > 1, f"--max-frame-similarity must be in (0, 1], got {args.max_frame_similarity:g}"),
        (args.max_height < 0 or args.max_height % 2, f"--max-height must be 0 or an even number of pixels, got {args.max_height}"),
        (args.min_rms_db > 0, f"--min-rms-db is a level in dBFS and must be <= 0, got {args.min_rms_db:g}"),
    ]
    for bad, message in problems:
        if bad:
            parser.error(message)
    try:
        args.shard = parse_shard(args.shard) if args.shard else None
        args.semantic = load_config(args.config).semantic
    except (ValueError, ConfigError) as error:
        parser.error(str(error))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "merge":
            summary = merge(args.out, args.parts, args.splits, args.seed, args.overwrite)
        else:
            options = ClipOptions(args.semantic, args.clip_seconds, args.windows, args.max_windows,
                                  args.max_frame_similarity, args.similarity_fps, args.keep_vocals, args.demucs_model,
                                  args.min_rms_db, args.max_height, threads=max(1, (os.cpu_count() or 1) // args.workers))
            summary = curate(args.input, args.out, options, args.splits, args.seed, args.workers, args.shard,
                             args.overwrite, args.allow_outside, progress=not args.no_progress)
        print_summary(summary)
        if args.push_to_hub:
            push_to_hub(args.out, summary["dataset"], args.push_to_hub)
            print(f"pushed to the Hub dataset repo {args.push_to_hub}")
    except (CurateError, InputError) as error:
        print(f"python -m data.curate: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
