"""Cached features as dataset columns: attaching them from the per-clip cache (``datasets.map``, swapped in
whole), and reading them back for training (``cached_columns``, ``row_features``).
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from data.features.cache import cache_path
from data.features.keys import COMPLETE, SWAP_NEW, SWAP_OLD, feature_columns
from data.schema import SPLITS
from model.config import V2MConfig
from model.features import VideoFeatures


def cached_columns(dataset, config: V2MConfig) -> dict | None:
    """The column names of ``config``'s cached features if ``dataset`` (a Dataset or DatasetDict) has all of them."""
    names = feature_columns(config)
    tables = dataset.values() if hasattr(dataset, "values") else [dataset]
    present = all(set(names.values()) <= set(table.column_names) for table in tables)
    return names if present else None


def row_features(row: dict, columns: dict) -> tuple[VideoFeatures, torch.Tensor]:
    """One dataset row -> (``VideoFeatures`` with float32 tensors, codes LongTensor [K, T])."""
    features = VideoFeatures.from_arrays(row[columns["semantic"]], row[columns["semantic_times"]],
                                         row[columns["motion"]], row[columns["motion_times"]], float(row["duration"]))
    codes = row[columns["codes"]]
    codes = np.stack([np.asarray(c) for c in codes]) if len(codes) else np.zeros((0, 0))
    return features, torch.as_tensor(codes.astype(np.int64))






def attach_batch(batch: dict, dataset_dir: str, columns: dict, keys: dict) -> dict:
    """``datasets.map`` function: the cached arrays of a batch of rows, as the new columns."""
    out = {name: [] for name in columns.values()}
    for clip_id in batch["id"]:
        for kind, value_column, times_column in (("semantic", "semantic", "semantic_times"),
                                                 ("motion", "motion", "motion_times"), ("codes", "codes", None)):
            with np.load(cache_path(Path(dataset_dir), kind, keys[kind], clip_id)) as data:
                out[columns[value_column]].append(data["values"])
                if times_column:
                    out[columns[times_column]].append(data["times"].astype(np.float32))
    return out


def column_types(dataset_dir: Path, rows: list[dict], columns: dict, keys: dict, motion_dim: int) -> dict:
    """``datasets`` feature types of the new columns, widths read from one cached clip."""
    from datasets import Array2D, List, Value

    first = rows[0]["id"]
    with np.load(cache_path(dataset_dir, "semantic", keys["semantic"], first)) as data:
        semantic_dim = data["values"].shape[1]
    with np.load(cache_path(dataset_dir, "codes", keys["codes"], first)) as data:
        code_dtype = str(data["values"].dtype)
    return {columns["semantic"]: Array2D(shape=(None, semantic_dim), dtype="float16"),
            columns["semantic_times"]: List(Value("float32")),
            columns["motion"]: Array2D(shape=(None, motion_dim), dtype="float32"),
            columns["motion_times"]: List(Value("float32")),
            columns["codes"]: List(List(Value(code_dtype)))}


def finish_swap(dataset_dir: Path) -> None:
    """Complete (or discard) a dataset swap that an earlier run started: see the module docstring."""
    new, old = dataset_dir / SWAP_NEW, dataset_dir / SWAP_OLD
    if (new / COMPLETE).is_file():
        old.mkdir(exist_ok=True)
        for name in (*SPLITS, "dataset_dict.json"):
            if (new / name).exists():
                if (dataset_dir / name).exists():
                    os.replace(dataset_dir / name, old / name)
                os.replace(new / name, dataset_dir / name)
    shutil.rmtree(new, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def quiet_datasets():
    """No ``datasets`` progress bars inside (saving a few tables is not worth three bars)."""
    import datasets

    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def attach_columns(dataset_dir: Path, dataset, rows: list[dict], columns: dict, keys: dict, motion_dim: int) -> None:
    """Write the dataset with this config's columns (replacing them if present) and swap it in."""
    import datasets

    new = dataset_dir / SWAP_NEW
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir()
    types = column_types(dataset_dir, rows, columns, keys, motion_dim)
    updated = {}
    for split, table in dataset.items():
        table = table.remove_columns([c for c in columns.values() if c in table.column_names])
        features = datasets.Features({**table.features, **types})
        if len(table) == 0:  # map never calls the function, so it would not add the columns
            updated[split] = datasets.Dataset.from_dict({name: [] for name in features}, features=features)
            continue
        updated[split] = table.map(attach_batch, batched=True, batch_size=64, features=features,
                                   fn_kwargs={"dataset_dir": str(dataset_dir), "columns": columns, "keys": keys},
                                   cache_file_name=str(new / f"{split}.map.arrow"), load_from_cache_file=False,
                                   desc=f"attach {split}")
    with quiet_datasets():
        datasets.DatasetDict(updated).save_to_disk(str(new), num_shards={split: 1 for split in updated})
    for arrow in new.glob("*.map.arrow"):
        arrow.unlink()
    (new / COMPLETE).write_text("")
    finish_swap(dataset_dir)
