"""Join clip datasets into one, keeping every row's split: e.g. the photo world plus the real-music set for training.

Why: each generator (``data.synthetic``, ``data.photo_world``, ``data.real_music``) and each curation run writes
its own dataset folder, but ``train.py`` reads one. Joining re-splits nothing (a row keeps the split its producer
gave it, so a test clip never becomes training data), hard-links the media and cached feature files (same bytes,
so ``data.features`` reuses them and the join costs no disk), and refuses a set marked ``do_not_train`` (a held-out
evaluation set) and two rows with one id.

    python -m data.join --out OUT SET [SET ...] [--overwrite]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.errors import UserError
from data.schema import SPLITS, check_schema, clip_features, row_caption, save_clip_rows, write_schema_file


class JoinError(UserError):
    """A clear, one-line problem with the sets to join or the output folder."""


def read_set(path: Path, error: type[UserError] = JoinError) -> tuple[dict, list[tuple[str, dict]]]:
    """(schema info, [(split, row with the schema's columns)]) of one saved clip dataset that may become training
    data (a missing caption read as None); problems raise ``error``. ``data.photo_world`` reads its source with it."""
    import datasets

    try:
        info = check_schema(path)
    except ValueError as problem:
        raise error(str(problem)) from None
    if info.get("do_not_train"):
        raise error(f"{path} is marked do_not_train (a held-out set); it must never become training data")
    dataset = datasets.load_from_disk(str(path))
    columns = [c for c in clip_features() if c != "caption"]
    rows = []
    for split in SPLITS:
        if split not in dataset:
            continue
        table = dataset[split]
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise error(f"{path}: split {split} lacks the columns {', '.join(missing)}")
        for row in table:
            rows.append((split, {**{c: row[c] for c in columns}, "caption": row_caption(row)}))
    return info, rows


def link_set_files(source: Path, out_dir: Path, rows: list[dict], error: type[UserError] = JoinError) -> int:
    """Hard-link each row's media and cached feature files (``features/<kind>__<key>/<id>.npz``) from ``source``
    into ``out_dir`` under the same relative paths: the same bytes, so each cache file's media stamp stays valid.
    Returns the number of feature files linked; a missing media file raises ``error``."""
    from data.photo_world import link_or_copy  # lazy: the photo world imports this module

    linked = 0
    kinds = sorted(p for p in (source / "features").glob("*__*") if p.is_dir()) if (source / "features").is_dir() else []
    for row in rows:
        for column in ("video_path", "music_path"):
            if not (source / row[column]).is_file():
                raise error(f"{source / row[column]}: named by row {row['id']} but missing")
            link_or_copy(source / row[column], out_dir / row[column])
        for kind in kinds:
            cached = kind / f"{row['id']}.npz"
            if cached.is_file():
                link_or_copy(cached, out_dir / "features" / kind.name / cached.name)
                linked += 1
    return linked


def join(sets: list[str | Path], out_dir: str | Path, overwrite: bool = False):
    """Write the joined dataset to ``out_dir``; returns the ``DatasetDict``."""
    from common.files import OwnedFolder
    from data.synthetic.build import prepare_out_dir

    sources = [Path(s).resolve() for s in sets]
    out_dir = Path(out_dir)
    if len(set(sources)) != len(sources):
        raise JoinError("a set is named twice")
    for source in sources:
        if not source.is_dir():
            raise JoinError(f"{source}: no such dataset folder")
        if source == out_dir.resolve():
            raise JoinError("--out must not be one of the sets joined")
    parts = [(source, read_set(source)[1]) for source in sources]
    seen: dict[str, Path] = {}
    for source, rows in parts:
        for _, row in rows:
            if row["id"] in seen:
                raise JoinError(f"clip id {row['id']!r} is in both {seen[row['id']]} and {source}")
            seen[row["id"]] = source
    prepare_out_dir(out_dir, {"sets": [str(s) for s in sources]}, overwrite, "data.join", JoinError)
    OwnedFolder(out_dir, "data.join", JoinError).claim("features")
    by_split: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for source, rows in parts:
        link_set_files(source, out_dir, [row for _, row in rows])
        for split, row in rows:
            by_split[split].append(row)
    dataset = save_clip_rows(out_dir, by_split)
    write_schema_file(out_dir, "join", sets=[str(s) for s in sources],
                      n_rows=sum(len(rows) for rows in by_split.values()))
    return dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.join", description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", type=Path, help="dataset folders to join (each keeps its splits)")
    parser.add_argument("--out", required=True, type=Path, help="the joined dataset's folder")
    parser.add_argument("--overwrite", action="store_true", help="delete this tool's earlier output in --out first")
    args = parser.parse_args(argv)
    try:
        dataset = join(args.sets, args.out, args.overwrite)
    except UserError as error:
        print(f"python -m data.join: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: " + ", ".join(f"{name} {len(dataset[name])}" for name in SPLITS) + " rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
