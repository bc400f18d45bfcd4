"""``add_features``: compute what is missing for a dataset and attach this config's feature columns.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

from common.device import Placement
from data.features.cache import remove_partial_files, stale_kinds
from data.features.columns import attach_columns, cached_columns, finish_swap, quiet_datasets
from data.features.compute import compute_missing
from data.features.keys import FeaturesError, codec_sample_rate, feature_columns, feature_keys, feature_settings
from data.schema import check_schema, write_schema_file
from model.config import V2MConfig


def add_features(dataset_dir: Path, config: V2MConfig, batch_size: int = 4, progress: bool = True, model=None,
                 placement: Placement | None = None, distributed: bool = False) -> dict:
    """Compute what is missing and attach this config's feature columns; returns a summary dict.

    ``model``: a ``VideoToMusic`` of ``config`` whose frozen encoders to use (else one is built on ``placement``).
    ``distributed``: this is one of the processes ``accelerate launch`` started: each computes its share of the
    missing clips (every clip's cache file is its own), then the main process attaches the columns for all.
    """
    started = time.monotonic()
    dataset_dir = Path(dataset_dir)
    info, dataset = open_dataset(dataset_dir)
    columns, keys = feature_columns(config), feature_keys(config)
    rows = [row for table in dataset.values() for row in table.select_columns(["id", "video_path", "music_path", "duration"])]
    if not rows:
        raise FeaturesError(f"{dataset_dir} has no clips")
    if cached_columns(dataset, config) and _columns_complete(dataset, columns):
        return {"computed": 0, "reused": len(rows), "columns": columns, "seconds": time.monotonic() - started}
    todo, failures = stale_kinds(dataset_dir, rows, keys), []
    rank, world = _process() if distributed else (0, 1)
    if todo:
        if rank == 0:
            print(f"features: computing {len(todo)} of {len(rows)} clips ({len(rows) - len(todo)} cached)"
                  + (f" on {world} processes" if world > 1 else ""), flush=True)
        model = model or _build_model(config, placement)
        failures = compute_missing(model, dataset_dir, todo[rank::world], keys, batch_size, progress and rank == 0)
    if world > 1:
        failures = _all_failures(failures)
    if failures:
        shown = "; ".join(failures[:3]) + (f"; ... {len(failures) - 3} more" if len(failures) > 3 else "")
        raise FeaturesError(f"features failed for {len(failures)} clip(s), columns not written: {shown}")
    if rank == 0:
        with contextlib.nullcontext() if progress else quiet_datasets():
            attach_columns(dataset_dir, dataset, rows, columns, keys, config.motion.feature_dim)
        _record_settings(dataset_dir, info, config, keys)
    if world > 1:
        _barrier()
    return {"computed": len(todo), "reused": len(rows) - len(todo), "columns": columns,
            "seconds": time.monotonic() - started}


def open_dataset(dataset_dir: Path):
    """(schema info, DatasetDict) of a clip dataset, after completing a swap an interrupted run left."""
    import datasets

    try:
        info = check_schema(dataset_dir)
    except ValueError as error:
        raise FeaturesError(str(error)) from None
    finish_swap(dataset_dir)
    remove_partial_files(dataset_dir)
    dataset = datasets.load_from_disk(str(dataset_dir))
    if not isinstance(dataset, datasets.DatasetDict):
        raise FeaturesError(f"{dataset_dir} holds a single Dataset, not the DatasetDict of data/schema.py")
    return info, dataset


def _columns_complete(dataset, columns: dict) -> bool:
    """No row lacks a value (a column can exist with nulls if rows were added by hand)."""
    return all(table.data.column(name).null_count == 0 for table in dataset.values() for name in columns.values())


def _process() -> tuple[int, int]:
    """(rank, number of processes) of an ``accelerate launch`` run (0, 1 otherwise)."""
    from accelerate import PartialState

    state = PartialState()
    return state.process_index, state.num_processes


def _all_failures(failures: list[str]) -> list[str]:
    """Every process's failures, on every process (each then stops, or all go on: no one waits forever)."""
    from accelerate.utils import gather_object

    return list(gather_object(failures))


def _barrier() -> None:
    from accelerate import PartialState

    PartialState().wait_for_everyone()


def _build_model(config: V2MConfig, placement: Placement | None = None):
    """The frozen encoders exactly as training and inference build them (same classes, same seed)."""
    from model.v2m import VideoToMusic

    model = VideoToMusic.from_config(config, placement=placement)
    if model.codec.sample_rate != codec_sample_rate(config):
        raise FeaturesError(f"the codec of {config.decoder.base} runs at {model.codec.sample_rate} Hz, not the "
                            f"{codec_sample_rate(config)} Hz its feature key assumes")
    return model


def _record_settings(dataset_dir: Path, info: dict, config: V2MConfig, keys: dict) -> None:
    """Note in schema.json which settings each feature key stands for (people read hashes badly)."""
    extra = {k: v for k, v in info.items() if k not in ("schema_version", "source")}
    known = dict(extra.get("features") or {})
    for kind, settings in feature_settings(config).items():
        known[f"{kind}__{keys[kind]}"] = settings
    write_schema_file(dataset_dir, info["source"], info["schema_version"], **{**extra, "features": known})
