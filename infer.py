"""Give it a video, get the video back with generated music.

    python infer.py --video IN.mp4 --out OUT.mp4 [--model DIR_OR_HUB_ID | --config PRESET] [--seed N]
                    [--guidance-scale G] [--wav-out OUT.wav] [--max-seconds S]
                    [--window-seconds 30] [--overlap-seconds 5]

Reads top to bottom: check arguments, load the model, generate window by window (each window decodes only its own
stretch of video and continues the previous window's music, see ``model.long_form``), write atomically.
Every failure a user can cause ends with a one-line ``error: ...`` on stderr and a non-zero exit.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common.cli import add_device_arguments, quiet_libraries, run_cli
from common.errors import UserError

MAX_WINDOW_SECONDS = 30.0  # MusicGen's training length; longer windows leave what the decoder has seen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Generate background music for a video.")
    parser.add_argument("--video", required=True, type=Path, help="input video file")
    parser.add_argument("--out", required=True, type=Path, help="output .mp4: the input video with the new music")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", default=None, help="trained model: a save_pretrained folder or a Hub repo id "
                                                        "(default: the project's default model)")
    source.add_argument("--config", default=None, help="build an UNTRAINED model from a preset (tiny, small, "
                                                         "medium) or YAML file, e.g. to check a setup")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (same seed, same music)")
    parser.add_argument("--guidance-scale", type=float, default=None,
                        help="classifier-free guidance scale, >= 1 (default: the model's, about 3)")
    parser.add_argument("--wav-out", type=Path, default=None, help="also write the music alone as WAV")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="music covers at most this many seconds from the start (default: the whole video)")
    parser.add_argument("--window-seconds", type=float, default=MAX_WINDOW_SECONDS,
                        help=f"generate in windows of this length (at most {MAX_WINDOW_SECONDS:g})")
    parser.add_argument("--overlap-seconds", type=float, default=5.0,
                        help="each window continues the last this-many seconds of the previous one's music, and "
                             "the two are crossfaded there")
    add_device_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Refuse impossible requests before loading anything heavy."""
    if args.out.suffix.lower() != ".mp4":
        raise UserError(f"--out must end in .mp4, got {args.out}")
    if not args.video.exists():
        raise UserError(f"{args.video}: no such file")
    if args.video.is_dir():
        raise UserError(f"{args.video}: is a directory, not a video file")
    for out in filter(None, (args.out, args.wav_out)):
        if out.resolve() == args.video.resolve():
            raise UserError(f"{out} is the input video: choose another output path (the input is never overwritten)")
        if out.exists() and out.is_dir():
            raise UserError(f"{out}: is a directory")
        if not out.parent.is_dir():
            raise UserError(f"{out.parent}: output folder does not exist")
    if args.guidance_scale is not None and not args.guidance_scale >= 1.0:
        raise UserError(f"--guidance-scale must be >= 1, got {args.guidance_scale}")
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise UserError(f"--max-seconds must be > 0, got {args.max_seconds}")
    if not 0 < args.window_seconds <= MAX_WINDOW_SECONDS:
        raise UserError(f"--window-seconds must be in (0, {MAX_WINDOW_SECONDS:g}], got {args.window_seconds}")
    if not 0 <= args.overlap_seconds < args.window_seconds:
        raise UserError(f"--overlap-seconds must be >= 0 and shorter than --window-seconds, got {args.overlap_seconds}")


def load_model(args: argparse.Namespace):
    from common.device import placement_for
    from model.v2m import DEFAULT_MODEL, VideoToMusic, default_model_is_trained

    placement = placement_for(args.device, args.precision)

    if args.config is not None:
        print(f"note: model built from preset {args.config!r} with UNTRAINED fusion and adapters: expect noise",
              file=sys.stderr)
        return VideoToMusic.from_config(args.config, placement=placement)
    name = args.model or DEFAULT_MODEL
    if name == DEFAULT_MODEL and not default_model_is_trained():
        print("note: the default model is a tiny UNTRAINED network (random weights): the pipeline runs end to end, "
              "but the music is noise. Pass --model with a trained model.", file=sys.stderr)
    elif name == DEFAULT_MODEL:
        print("note: using the toy demo model (models/demo, trained here on synthetic clips; see its README). "
              "For real videos, fine-tune the small or medium preset.", file=sys.stderr)
    return VideoToMusic.from_pretrained(name, device=placement)


def music_seconds(video: Path, max_seconds: float | None) -> float:
    """How much music to make: the video's length, capped; says so when the video is longer."""
    from media.video import probe_video, scan_duration

    duration = probe_video(video).duration
    if duration <= 0:  # no length in the headers: read the packet times (no decoding)
        duration = scan_duration(video)
    if max_seconds is not None and duration > max_seconds:
        print(f"note: the video is {duration:.1f} s long; music covers the first {max_seconds:.1f} s only",
              file=sys.stderr)
        return max_seconds
    return duration


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_cli(lambda: run(args), debug=args.debug)


def run(args: argparse.Namespace) -> None:
    check_args(args)
    quiet_libraries()
    from common.files import temporary_sibling
    from media.audio import peak_normalise, write_wav
    from media.mux import mux_music
    from model.long_form import generate_long

    started = time.perf_counter()
    seconds = music_seconds(args.video, args.max_seconds)
    model = load_model(args).eval()
    wav = generate_long(model, args.video, seconds, args.window_seconds, args.overlap_seconds, seed=args.seed,
                        guidance_scale=args.guidance_scale, progress=True)
    music = peak_normalise(wav.numpy())
    tmp_wav = temporary_sibling(args.out, ".wav")
    try:
        write_wav(tmp_wav, music, model.sample_rate)
        mux_music(args.video, tmp_wav, args.out)
        if args.wav_out is not None:
            write_wav(args.wav_out, music, model.sample_rate)
    finally:
        tmp_wav.unlink(missing_ok=True)
    print(f"wrote {args.out} ({seconds:.1f} s of music, seed {args.seed}) in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
