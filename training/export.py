"""Turn a training checkpoint into a shareable model folder (what ``train.py`` writes at the end, from any step).

    python -m training.export --checkpoint runs/x/checkpoints/step_001000 --out models/my-model

The checkpoint's ``state.json`` holds the full config, so the frozen parts are rebuilt exactly as in training.
"""
from __future__ import annotations

import json
from pathlib import Path

from common.cli import OneLineParser, quiet_libraries, run_cli
from common.errors import UserError


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(description="Export a training checkpoint with save_pretrained.")
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    run_cli(lambda: export(args.checkpoint, args.out), debug=args.debug)


def export(checkpoint: Path, out: Path) -> None:
    if not (checkpoint / "state.json").is_file():
        raise UserError(f"{checkpoint}: not a training checkpoint (no state.json)")
    quiet_libraries()
    from safetensors.torch import load_file

    from model.config import config_from_dict
    from model.v2m import VideoToMusic

    config = config_from_dict(json.loads((checkpoint / "state.json").read_text())["config"])
    model = VideoToMusic.from_config(config)
    model.load_trainable_state(load_file(str(checkpoint / "trainable.safetensors")), source=str(checkpoint))
    model.eval().save_pretrained(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
