"""Building the Arrow dataset of a curation from its records: duplicates left out, deterministic splits by video
id, orphaned media removed, ``rejected.jsonl`` and ``schema.json`` written; sharing it on the Hub.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from common.files import OwnedFolder, atomic_write_text
from data.curate.options import CURATE_VERSION, FEATURE_SWAP_DIRS, PARAMS_FILE, REJECTED_FILE, CurateError, Rejection
from data.curate.records import load_records, rejected_entry
from data.schema import MUSIC_SAMPLE_RATE, SPLITS, clip_features, write_schema_file
from data.sources import SourceVideo
from data.splits import assign_splits


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

    OwnedFolder(out_dir, "data.curate", CurateError, marker=PARAMS_FILE).claim(
        *SPLITS, "dataset_dict.json", "schema.json", REJECTED_FILE)
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
    atomic_write_text(out_dir / REJECTED_FILE, "".join(json.dumps(entry) + "\n" for entry in rejected))
    write_schema_file(out_dir, "curate", version=CURATE_VERSION, splits=dict(zip(SPLITS, fractions)), seed=seed,
                      sample_rate=MUSIC_SAMPLE_RATE, videos=len(kept), clips=sum(len(dataset[s]) for s in SPLITS),
                      rejected=len(rejected), **extra)
    return dataset, rejected


def push_to_hub(out_dir: Path, dataset, repo_id: str, private: bool = False) -> None:
    """Share the dataset: the Arrow table via ``DatasetDict.push_to_hub``, then the media it points to."""
    from huggingface_hub import HfApi

    dataset.push_to_hub(repo_id, private=private)
    HfApi().upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(out_dir),
                          allow_patterns=["clips/*", "music/*", "schema.json", REJECTED_FILE, PARAMS_FILE],
                          commit_message="Add curated clips and music")
