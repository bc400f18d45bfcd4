"""Feature cache: CLIP tokens, motion features and codec codes of every clip, added as dataset columns.

    python -m data.features --dataset DATASET_DIR --config configs/small.yaml [--set motion.flow_fps=5]

Why: the frozen encoders (CLIP, optical flow, EnCodec) cost far more than the trainable fusion, so they run once
per clip here (DESIGN.md section 1) and training reads their outputs (``cached_columns`` + ``row_features``).

Columns are named by ``data.schema.feature_key`` of the settings that produce them, so features made with another
preset are never mistaken for this one's (and several presets' columns can live side by side):

    semantic__<key> float16 [Tc, Dc], semantic_times__<key> float32 [Tc]   key: encoder name, weights, random_init, clip_fps
    motion__<key>   float32 [Tf, Dm], motion_times__<key>   float32 [Tf]   key: every MotionConfig field
    codes__<key>    int16   [K, T]                                           key: decoder base / random_init / codec, rate

Resuming: each clip's result is a small file ``features/<kind>__<key>/<clip id>.npz`` written atomically (temp
file + rename) and stamped with a fingerprint of the media it came from, so a run killed at any point continues
without recomputing finished clips, and a remade clip is never served stale features. The columns are attached
from these files at the end (``datasets.map`` with a module-level function) and the dataset is swapped in as a
whole (``.features_new`` -> split folders), which a later run completes if it was interrupted.

Random-init presets: the encoders' weights come from ``VideoToMusic.from_config(config)`` with its default seed,
so cached features match a model built the same way (train.py must not pass another seed for frozen parts).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from data.curate import OneLineParser
from data.schema import MUSIC_SAMPLE_RATE, SPLITS, check_schema, feature_key, write_schema_file
from model.config import ConfigError, V2MConfig, load_config
from model.features import VideoFeatures

KINDS = ("semantic", "motion", "codes")
CACHE_DIR = "features"
SWAP_NEW, SWAP_OLD = ".features_new", ".features_old"  # the dataset being swapped in, and the one it replaces
COMPLETE = "COMPLETE"


class FeaturesError(ValueError):
    """A dataset or config that cannot be used; the message is one line meant for the user."""


# ---------------------------------------------------------------------------------------------------- names


def codec_sample_rate(config: V2MConfig) -> int:
    """The rate music is fed to the codec: the configured one (spectral or random-init codec), else EnCodec's 32 kHz."""
    decoder = config.decoder
    if decoder.codec is not None:
        return int(decoder.codec.get("sample_rate", MUSIC_SAMPLE_RATE))
    return int((decoder.random_init or {}).get("codec", {}).get("sampling_rate", MUSIC_SAMPLE_RATE))


def feature_settings(config: V2MConfig) -> dict[str, dict]:
    """Everything that changes each kind of feature.

    Fields are listed by exclusion (only those known not to matter are left out), so a field added to a config
    section later changes the key rather than silently reusing stale features. Weight files named in the config
    add a fingerprint of their content: refitting a codec in place must not reuse old codes.
    """
    semantic = {k: v for k, v in dataclasses.asdict(config.semantic).items() if k != "batch_size"}
    semantic["weights"] = _file_stamp(semantic["weights"])  # the file's content, wherever it lies
    codes = {k: v for k, v in dataclasses.asdict(config.decoder).items()
             if k not in ("quantization", "compute_dtype", "gradient_checkpointing")}  # the codec stays float32
    if codes["codec"] is not None:  # a codec of its own: the decoder (base, random_init) does not change codes
        codes = {"codec": {**codes["codec"], "weights": _file_stamp(codes["codec"].get("weights"))}}
    codes["sample_rate"] = codec_sample_rate(config)
    return {"semantic": semantic, "motion": dataclasses.asdict(config.motion), "codes": codes}


def _file_stamp(path: str | None) -> str | None:
    """A weights file's content fingerprint; a missing file keeps its path (building the model will fail anyway)."""
    if not path:
        return None
    return f"sha1:{media_stamp(Path(path))}" if Path(path).is_file() else str(path)


def feature_keys(config: V2MConfig) -> dict[str, str]:
    return {kind: feature_key(kind, settings) for kind, settings in feature_settings(config).items()}


def feature_columns(config: V2MConfig) -> dict[str, str]:
    """Column names of this config's features: semantic, semantic_times, motion, motion_times, codes."""
    keys = feature_keys(config)
    return {"semantic": f"semantic__{keys['semantic']}", "semantic_times": f"semantic_times__{keys['semantic']}",
            "motion": f"motion__{keys['motion']}", "motion_times": f"motion_times__{keys['motion']}",
            "codes": f"codes__{keys['codes']}"}


# ---------------------------------------------------------------------------------------------------- reading (train.py)


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


# ---------------------------------------------------------------------------------------------------- per-clip cache


def cache_path(dataset_dir: Path, kind: str, key: str, clip_id: str) -> Path:
    return dataset_dir / CACHE_DIR / f"{kind}__{key}" / f"{clip_id}.npz"


def media_stamp(path: Path, chunk: int = 1 << 16) -> str:
    """Cheap fingerprint of a media file (size + first and last 64 KiB): changes when the clip is remade."""
    size = path.stat().st_size
    digest = hashlib.sha1(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(chunk))
        f.seek(max(0, size - chunk))
        digest.update(f.read(chunk))
    return digest.hexdigest()[:16]


def cached_stamp(path: Path) -> str | None:
    """The media stamp a cache file was made from (None if missing or torn); reads nothing else."""
    try:
        with np.load(path) as data:
            return str(data["stamp"])
    except (OSError, KeyError, ValueError, EOFError):
        return None


def write_cache(path: Path, stamp: str, **arrays: np.ndarray) -> None:
    """Write under a temporary name, then rename: a file named ``*.npz`` is always complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with open(tmp, "wb") as f:  # a file object, so numpy does not append ".npz" to the temporary name
        np.savez(f, stamp=np.asarray(stamp), **arrays)
    tmp.replace(path)


def remove_partial_files(dataset_dir: Path) -> None:
    """Temporary files of a run that was killed while writing them."""
    for path in (dataset_dir / CACHE_DIR).glob("*/.*.partial"):
        path.unlink(missing_ok=True)


def stale_kinds(dataset_dir: Path, rows: list[dict], keys: dict) -> list[tuple[dict, set[str]]]:
    """(row, kinds to compute) for every row lacking a cache entry made from its current media."""
    todo = []
    for row in rows:
        stamps = {"video": media_stamp(dataset_dir / row["video_path"]), "music": media_stamp(dataset_dir / row["music_path"])}
        kinds = {kind for kind in KINDS if cached_stamp(cache_path(dataset_dir, kind, keys[kind], row["id"]))
                 != stamps["music" if kind == "codes" else "video"]}
        if kinds:
            todo.append((row, kinds))
    return todo


# ---------------------------------------------------------------------------------------------------- computing


def compute_video_features(model, dataset_dir: Path, row: dict, keys: dict, kinds: set[str]) -> None:
    """Decode the clip once, run both streams, cache the kinds asked for."""
    video = dataset_dir / row["video_path"]
    features = model.extract_features(video, max_seconds=float(row["duration"]))
    stamp = media_stamp(video)
    if "semantic" in kinds:
        write_cache(cache_path(dataset_dir, "semantic", keys["semantic"], row["id"]), stamp,
                    values=features.semantic.numpy().astype(np.float16), times=features.semantic_times.numpy())
    if "motion" in kinds:
        write_cache(cache_path(dataset_dir, "motion", keys["motion"], row["id"]), stamp,
                    values=features.motion.numpy().astype(np.float32), times=features.motion_times.numpy())


def load_music(path: Path, sample_rate: int) -> np.ndarray:
    """float32 [S] mono at ``sample_rate`` (the schema's 32 kHz mono, resampled if the codec wants another rate)."""
    from data.audio import resample

    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [S, C]
    mono = audio.mean(axis=1)[None]
    return resample(mono, rate, sample_rate)[0]


def compute_codes(codec, dataset_dir: Path, rows: list[dict], key: str) -> None:
    """Encode the music of ``rows``, batching clips of equal length (no padding changes any clip's codes)."""
    waves = {row["id"]: load_music(dataset_dir / row["music_path"], codec.sample_rate) for row in rows}
    by_length: dict[int, list[dict]] = {}
    for row in rows:
        by_length.setdefault(len(waves[row["id"]]), []).append(row)
    dtype = np.int16 if codec.codebook_size <= np.iinfo(np.int16).max else np.int32
    for group in by_length.values():
        batch = torch.from_numpy(np.stack([waves[row["id"]] for row in group]))[:, None]  # [B, 1, S]
        codes = codec.encode(batch).numpy()  # [B, K, T]
        for row, row_codes in zip(group, codes):
            write_cache(cache_path(dataset_dir, "codes", key, row["id"]), media_stamp(dataset_dir / row["music_path"]),
                        values=row_codes.astype(dtype))


def compute_missing(model, dataset_dir: Path, todo: list[tuple[dict, set[str]]], keys: dict, batch_size: int,
                    progress: bool) -> list[str]:
    """Fill the cache for ``todo`` (see ``stale_kinds``), ``batch_size`` clips at a time; returns failure messages."""
    from data.video import VideoError

    failures = []
    bar = tqdm(total=len(todo), desc="features", unit="clip", disable=not progress)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        for row, kinds in batch:
            if kinds & {"semantic", "motion"}:
                try:
                    compute_video_features(model, dataset_dir, row, keys, kinds)
                except (VideoError, OSError) as error:
                    failures.append(f"{row['id']}: {str(error).splitlines()[0]}")
        music_rows = [row for row, kinds in batch if "codes" in kinds]
        try:
            compute_codes(model.codec, dataset_dir, music_rows, keys["codes"])
        except (sf.LibsndfileError, OSError, RuntimeError) as error:
            failures.append(f"music of {[row['id'] for row in music_rows]}: {str(error).splitlines()[0]}")
        bar.update(len(batch))
    bar.close()
    return failures


# ---------------------------------------------------------------------------------------------------- attaching


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
def _quiet_datasets():
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
    with _quiet_datasets():
        datasets.DatasetDict(updated).save_to_disk(str(new), num_shards={split: 1 for split in updated})
    for arrow in new.glob("*.map.arrow"):
        arrow.unlink()
    (new / COMPLETE).write_text("")
    finish_swap(dataset_dir)


# ---------------------------------------------------------------------------------------------------- command


def add_features(dataset_dir: Path, config: V2MConfig, batch_size: int = 4, progress: bool = True) -> dict:
    """Compute what is missing and attach this config's feature columns; returns a summary dict."""
    started = time.monotonic()
    info, dataset = open_dataset(dataset_dir)
    columns, keys = feature_columns(config), feature_keys(config)
    rows = [row for table in dataset.values() for row in table.select_columns(["id", "video_path", "music_path", "duration"])]
    if not rows:
        raise FeaturesError(f"{dataset_dir} has no clips")
    if cached_columns(dataset, config) and _columns_complete(dataset, columns):
        return {"computed": 0, "reused": len(rows), "columns": columns, "seconds": time.monotonic() - started}
    todo, failures = stale_kinds(dataset_dir, rows, keys), []
    if todo:
        print(f"features: computing {len(todo)} of {len(rows)} clips ({len(rows) - len(todo)} cached)", flush=True)
        failures = compute_missing(_build_model(config), dataset_dir, todo, keys, batch_size, progress)
    if failures:
        shown = "; ".join(failures[:3]) + (f"; ... {len(failures) - 3} more" if len(failures) > 3 else "")
        raise FeaturesError(f"features failed for {len(failures)} clip(s), columns not written: {shown}")
    if progress:
        attach_columns(dataset_dir, dataset, rows, columns, keys, config.motion.feature_dim)
    else:
        with _quiet_datasets():
            attach_columns(dataset_dir, dataset, rows, columns, keys, config.motion.feature_dim)
    _record_settings(dataset_dir, info, config, keys)
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


def _build_model(config: V2MConfig):
    """The frozen encoders exactly as training and inference build them (same classes, same seed)."""
    from model.v2m import VideoToMusic

    model = VideoToMusic.from_config(config)
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
    write_schema_file(dataset_dir, info["source"], **{**extra, "features": known})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m data.features", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, type=Path, help="clip dataset folder (data.curate or data.synthetic)")
    parser.add_argument("--config", default="small", help="preset name or YAML path (default small)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override, repeatable (e.g. --set motion.flow_fps=5)")
    parser.add_argument("--batch-size", type=int, default=4,
                        help="clips whose music (of equal length) the codec encodes in one forward pass (default 4; "
                             "with MusicGen's EnCodec on a CPU: about 1.5x less CPU time per clip than 1, +1.1 GB of "
                             "memory per 30 s clip)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    try:
        args.config = load_config(args.config, args.overrides)
    except ConfigError as error:
        parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = add_features(args.dataset, args.config, args.batch_size, progress=not args.no_progress)
    except FeaturesError as error:
        print(f"python -m data.features: error: {error}", file=sys.stderr)
        return 1
    columns = ", ".join(summary["columns"].values())
    print(f"{args.dataset}: features for {summary['computed']} clips computed, {summary['reused']} reused from the "
          f"cache, in {summary['seconds']:.1f} s; columns {columns}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
