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
from data.features.build import add_features, open_dataset
from data.features.cache import cache_path, cached_stamp, stale_kinds, write_cache
from data.features.columns import cached_columns, row_features
from data.features.command import main, parse_args
from data.features.compute import encode_music_files
from data.features.keys import (CACHE_DIR, KINDS, SWAP_NEW, SWAP_OLD, FeaturesError, codec_sample_rate, feature_columns,
                                feature_keys, feature_settings, media_stamp)

__all__ = ["CACHE_DIR", "KINDS", "SWAP_NEW", "SWAP_OLD", "FeaturesError", "add_features", "cache_path", "cached_columns",
           "cached_stamp", "codec_sample_rate", "encode_music_files", "feature_columns", "feature_keys", "feature_settings", "main",
           "media_stamp", "open_dataset", "parse_args", "row_features", "stale_kinds", "write_cache"]
