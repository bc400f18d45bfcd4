"""The clip schema: what one row of a training dataset holds (version ``SCHEMA_VERSION``).

A dataset is a Hugging Face ``datasets.DatasetDict`` saved with ``save_to_disk`` (splits ``train``, ``test``,
``validation``; any may be empty) inside ``DATASET_DIR``, beside the media it points to::

    DATASET_DIR/
      dataset_info.json / train/ test/ validation/   (datasets' own files; written by save_to_disk)
      schema.json                                    {"schema_version": 2, "source": "curate" | "synthetic", ...}
      clips/<id>.mp4                                 the clip's video (its own audio track, if any, is ignored)
      music/<id>.wav                                 the clip's music: 32 kHz mono PCM, vocals removed
      rejected.jsonl                                 (curation) one JSON object per rejected file, with a reason

Columns every producer writes (paths are relative to DATASET_DIR so a dataset folder can be moved or shared):

| column     | type          | meaning |
|------------|---------------|---------|
| id         | string        | unique clip id, ``<video_id>`` or ``<video_id>_w<k>`` for windows |
| video_id   | string        | id of the source video; splits are made by it, so no video is in two splits |
| video_path | string        | ``clips/<id>.mp4`` |
| music_path | string        | ``music/<id>.wav`` |
| start      | float64       | where the clip starts in the source video, seconds |
| duration   | float64       | clip length, seconds |
| title      | string        | free text (may be empty) |
| tags       | list[string]  | free tags (may be empty) |
| caption    | string        | (version 2) a text prompt describing the music, or ``None``: curation takes a manifest's
|            |               | ``caption``, else title and tags; the synthetic set builds it from its ground truth
|            |               | (``data/captions.py``). Training reads it for models with a text encoder. |

Optional ground truth (the synthetic set; ``None`` elsewhere): ``event_times`` list[float64] seconds of cuts and
impacts, ``beat_times`` list[float64], ``tempo`` float64 BPM, ``key`` string (e.g. "A"), ``mode`` string
("major"/"minor"), ``program`` int64 (General MIDI program).

Versions: 1 had no ``caption`` column. Version-1 datasets still load: every reader takes a missing caption as
``None`` (``row_caption``), and adding cached features keeps a dataset's version.

Cached features (``data.features``, optional) are extra columns whose names carry a short hash of the settings that
produced them, so a different preset never reuses stale features (see ``feature_key``):
``semantic__<key>`` float16 [Tc, Dc], ``semantic_times__<key>`` float32 [Tc], ``motion__<key>`` float32 [Tf, Dm],
``motion_times__<key>`` float32 [Tf], ``codes__<key>`` int16/int32 [K, T].
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from common.files import atomic_write_json

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: no caption column (read as None)
SPLITS = ("train", "test", "validation")
MUSIC_SAMPLE_RATE = 32_000

REQUIRED_COLUMNS = ("id", "video_id", "video_path", "music_path", "start", "duration", "title", "tags")
GROUND_TRUTH_COLUMNS = ("event_times", "beat_times", "tempo", "key", "mode", "program")


def clip_features():
    """The ``datasets.Features`` of a clip row (ground truth included, possibly ``None``)."""
    from datasets import Features, Sequence, Value

    return Features(
        {
            "id": Value("string"),
            "video_id": Value("string"),
            "video_path": Value("string"),
            "music_path": Value("string"),
            "start": Value("float64"),
            "duration": Value("float64"),
            "title": Value("string"),
            "tags": Sequence(Value("string")),
            "caption": Value("string"),
            "event_times": Sequence(Value("float64")),
            "beat_times": Sequence(Value("float64")),
            "tempo": Value("float64"),
            "key": Value("string"),
            "mode": Value("string"),
            "program": Value("int64"),
        }
    )


def feature_key(kind: str, settings: dict) -> str:
    """A short stable hash naming cached features: same ``kind`` + same settings -> same column name.

    Args:
        kind: "semantic", "motion" or "codes".
        settings: everything that changes the features (encoder names, pretrained tags, fps, sizes, codec id).
    """
    blob = json.dumps({"kind": kind, **settings}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def row_caption(row: dict) -> str | None:
    """The row's caption, or None (a version-1 row has no caption column; an empty caption is none)."""
    caption = row.get("caption")
    return caption if caption and caption.strip() else None


def save_clip_rows(dataset_dir: str | Path, rows_by_split: dict[str, list[dict]]):
    """Save rows holding the schema's columns (``clip_features``) as the dataset's splits; returns the ``DatasetDict``.

    Every split is written (missing ones empty), each as exactly one shard: datasets 5.2 saves an empty split with
    zero shards and then cannot load it back. An earlier save's shards are removed first, so no stale row survives.
    """
    import shutil

    from datasets import Dataset, DatasetDict

    features = clip_features()
    dataset = DatasetDict({name: Dataset.from_dict({c: [r[c] for r in rows_by_split.get(name, [])] for c in features},
                                                   features=features) for name in SPLITS})
    for name in SPLITS:
        shutil.rmtree(Path(dataset_dir) / name, ignore_errors=True)
    dataset.save_to_disk(str(dataset_dir), num_shards={name: 1 for name in SPLITS})
    return dataset


def write_schema_file(dataset_dir: str | Path, source: str, schema_version: int = SCHEMA_VERSION, **extra) -> None:
    """Record the schema version and producer beside the dataset (read back by ``check_schema``); a tool that only
    adds columns to an existing dataset passes its ``schema_version`` on."""
    info = {"schema_version": schema_version, "source": source, **extra}
    atomic_write_json(Path(dataset_dir) / "schema.json", info)


def check_schema(dataset_dir: str | Path) -> dict:
    """Read ``schema.json`` and refuse datasets written by an incompatible schema version."""
    path = Path(dataset_dir) / "schema.json"
    if not path.is_file():
        raise ValueError(f"{dataset_dir} is not a clip dataset (no schema.json); make one with data.curate or data.synthetic")
    info = json.loads(path.read_text())
    if info.get("schema_version") not in READABLE_VERSIONS:
        raise ValueError(f"{dataset_dir}: schema version {info.get('schema_version')} (this code reads "
                         f"{', '.join(map(str, READABLE_VERSIONS))})")
    return info


def read_split(dataset_dir: str | Path, split: str, limit: int | None = None) -> list[dict]:
    """The rows of one split of a saved clip dataset, the first ``limit`` of them, for scoring tools.

    Unlike ``training.batches.load_split`` it reads held-out sets (``do_not_train``): measuring on them is what
    scoring is for. Raises ``ValueError`` with one line (missing folder or schema, unknown or empty split)."""
    from datasets import load_from_disk

    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise ValueError(f"{dataset_dir} is not a folder")
    check_schema(dataset_dir)
    try:
        dataset = load_from_disk(str(dataset_dir))
    except (ValueError, FileNotFoundError) as error:
        raise ValueError(f"{dataset_dir}: {str(error).splitlines()[0]}") from None
    if split not in dataset:
        raise ValueError(f"{dataset_dir} has no split {split!r} (it has {', '.join(dataset)})")
    rows = dataset[split].select(range(min(limit, len(dataset[split])))) if limit else dataset[split]
    if len(rows) == 0:
        raise ValueError(f"split {split!r} of {dataset_dir} is empty")
    return list(rows)
