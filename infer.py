"""Give it a video, get the video back with generated music.

    python infer.py --video IN.mp4 --out OUT.mp4 [--model DIR_OR_HUB_ID | --config PRESET] [--seed N]
                    [--guidance-scale G] [--wav-out OUT.wav] [--max-seconds S]
                    [--window-seconds 30] [--overlap-seconds 5] [--prompt "calm piano, slow"]
                    [--text-guidance-scale T]
    python infer.py --video IN.mp4 --music OLD.wav --regenerate START:END --out OUT.mp4 [--wav-out NEW.wav] ...

Reads top to bottom: check arguments, load the model, generate window by window (each window decodes only its own
stretch of video and continues the previous window's music, see ``model.long_form``), write atomically.
``make_soundtrack`` is that job for a model already loaded: the web page (``app.py``) calls it too.
``regenerate_soundtrack`` is the other job: new music for one range of music the user already has, the rest kept
sample for sample (``model.regenerate``).
Every failure a user can cause ends with a one-line ``error: ...`` on stderr and a non-zero exit.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.cli import OneLineParser, add_device_arguments, quiet_libraries, run_cli
from common.errors import UserError

MAX_WINDOW_SECONDS = 30.0  # MusicGen's training length; longer windows leave what the decoder has seen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(description="Generate background music for a video.")
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
    parser.add_argument("--prompt", default=None,
                        help='optional text prompt that steers the style ("calm piano, slow"); needs a model with a '
                             "text encoder. Without it the music follows the video alone")
    parser.add_argument("--text-guidance-scale", type=float, default=None,
                        help="how strongly the prompt steers, >= 0 (default: the model's, about 3; 0 ignores it)")
    parser.add_argument("--wav-out", type=Path, default=None, help="also write the music alone as WAV")
    parser.add_argument("--music", type=Path, default=None,
                        help="existing music for the video (e.g. an earlier --wav-out); with --regenerate")
    parser.add_argument("--regenerate", default=None, metavar="START:END",
                        help="with --music: make new music for START:END seconds only, keeping the rest of --music "
                             "sample for sample")
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
    check_paths(args.video, args.out, args.wav_out, args.music)
    check_settings(args.guidance_scale, args.max_seconds, args.window_seconds, args.overlap_seconds)
    check_prompt(args.prompt, args.text_guidance_scale)
    if (args.music is None) != (args.regenerate is None):
        raise UserError("--music and --regenerate go together: --music OLD.wav --regenerate START:END")
    if args.music is not None and args.max_seconds is not None:
        raise UserError("--max-seconds does not apply with --music: the output keeps the length of --music")
    if args.regenerate is not None:
        parse_range(args.regenerate)


def parse_range(text: str) -> tuple[float, float]:
    """``"12.5:20"`` -> (12.5, 20.0) seconds; a malformed, empty or reversed range is a one-line ``UserError``."""
    from model.regenerate import check_range

    parts = text.split(":")
    try:
        start, end = (float(part) for part in parts)
    except ValueError:
        raise UserError(f"--regenerate must be START:END in seconds (like 12.5:20), got {text!r}") from None
    check_range(start, end, music_seconds=math.inf)
    return start, end


def check_paths(video: Path, out: Path, wav_out: Path | None = None, music: Path | None = None) -> None:
    """The inputs exist and are files; the outputs are new paths in existing folders, never an input."""
    if out.suffix.lower() != ".mp4":
        raise UserError(f"--out must end in .mp4, got {out}")
    for given, what in filter(lambda pair: pair[0] is not None, ((video, "video"), (music, "music"))):
        if not given.exists():
            raise UserError(f"{given}: no such file")
        if given.is_dir():
            raise UserError(f"{given}: is a directory, not a {what} file")
    if wav_out is not None and wav_out.resolve() == out.resolve():
        raise UserError(f"--wav-out and --out are the same file ({out}): one would overwrite the other")
    for path in filter(None, (out, wav_out)):
        if path.resolve() == video.resolve():
            raise UserError(f"{path} is the input video: choose another output path (the input is never overwritten)")
        if music is not None and path.resolve() == music.resolve():
            raise UserError(f"{path} is the input music: choose another output path (the input is never overwritten)")
        if path.exists() and path.is_dir():
            raise UserError(f"{path}: is a directory")
        if not path.parent.is_dir():
            raise UserError(f"{path.parent}: output folder does not exist")


def check_settings(guidance_scale: float | None, max_seconds: float | None, window_seconds: float,
                   overlap_seconds: float) -> None:
    """The generation settings are possible (messages name the CLI flags; the web page shows the same ones)."""
    if guidance_scale is not None and not guidance_scale >= 1.0:
        raise UserError(f"--guidance-scale must be >= 1, got {guidance_scale}")
    if max_seconds is not None and not max_seconds > 0:
        raise UserError(f"--max-seconds must be > 0, got {max_seconds}")
    if not 0 < window_seconds <= MAX_WINDOW_SECONDS:
        raise UserError(f"--window-seconds must be in (0, {MAX_WINDOW_SECONDS:g}], got {window_seconds}")
    if not 0 <= overlap_seconds < window_seconds:
        raise UserError(f"--overlap-seconds must be >= 0 and shorter than --window-seconds, got {overlap_seconds}")


def check_prompt(prompt: str | None, text_guidance_scale: float | None) -> None:
    """A prompt, when given, has words; its scale is possible."""
    if prompt is not None and not prompt.strip():
        raise UserError("--prompt is empty: give a few words (\"calm piano, slow\") or leave it out")
    if text_guidance_scale is not None and not text_guidance_scale >= 0.0:
        raise UserError(f"--text-guidance-scale must be >= 0, got {text_guidance_scale}")


def check_model_takes_prompt(model, prompt: str | None) -> None:
    """A prompt needs a text encoder: say so in one line instead of failing inside generation."""
    if prompt is not None and getattr(model, "text_conditioner", None) is None:
        raise UserError("this model has no text encoder (text.enabled is false in its config): leave out --prompt, "
                        "or use a model trained with text")


def check_window(model, window_seconds: float) -> None:
    """A window is no longer than the loaded model generates at once."""
    if window_seconds > model.generation.max_seconds:
        raise UserError(f"--window-seconds {window_seconds:g} is longer than this model generates at once "
                        f"(its generation.max_seconds is {model.generation.max_seconds:g})")


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


def video_seconds(video: Path) -> float:
    """The video's length; raises ``VideoError`` (one line) for a file that is not a usable video."""
    from media.video import probe_video, scan_duration

    duration = probe_video(video).duration
    if duration <= 0:  # no length in the headers: read the packet times (no decoding)
        duration = scan_duration(video)
    return duration


def music_seconds(video: Path, max_seconds: float | None) -> float:
    """How much music to make: the video's length, capped; says so when the video is longer."""
    duration = video_seconds(video)
    if max_seconds is not None and duration > max_seconds:
        print(f"note: the video is {duration:.1f} s long; music covers the first {max_seconds:.1f} s only",
              file=sys.stderr)
        return max_seconds
    return duration


@dataclass(frozen=True)
class Soundtrack:
    """What ``make_soundtrack`` wrote: ``music`` float32 [samples] at ``sample_rate``, peak-normalised."""

    video: Path  # the mp4 with the new music
    wav: Path | None  # the music alone, when asked for
    seconds: float  # music length (the video's, or the cap; with --music, that music's)
    music: np.ndarray
    sample_rate: int
    plan: object | None = None  # regenerate_soundtrack: where the edit sits (``model.regenerate.RegenerationPlan``)


def make_soundtrack(model, video: Path, out: Path, *, seed: int = 0, guidance_scale: float | None = None,
                    max_seconds: float | None = None, window_seconds: float = MAX_WINDOW_SECONDS,
                    overlap_seconds: float = 5.0, wav_out: Path | None = None, progress: bool = True,
                    prompt: str | None = None, text_guidance_scale: float | None = None) -> Soundtrack:
    """The job of this command, for anything that already holds a model (the CLI, the web page ``app.py``).

    Generates window by window (``model.long_form``), then writes ``out`` (the video with the music) and
    ``wav_out`` atomically: a failure leaves no output and no temporary file behind. ``prompt``: an optional text
    prompt (models with a text encoder).
    """
    from media.audio import peak_normalise
    from model.long_form import generate_long

    check_paths(video, out, wav_out)
    check_settings(guidance_scale, max_seconds, window_seconds, overlap_seconds)
    check_prompt(prompt, text_guidance_scale)
    check_model_takes_prompt(model, prompt)
    check_window(model, window_seconds)
    seconds = music_seconds(video, max_seconds)
    wav = generate_long(model, video, seconds, window_seconds, overlap_seconds, seed=seed,
                        guidance_scale=guidance_scale, progress=progress, prompt=prompt,
                        text_guidance_scale=text_guidance_scale)
    music = peak_normalise(wav.numpy())
    write_outputs(video, out, wav_out, music, model.sample_rate)
    return Soundtrack(out, wav_out, seconds, music, model.sample_rate)


def regenerate_soundtrack(model, video: Path, music_path: Path, start: float, end: float, out: Path, *,
                          seed: int = 0, guidance_scale: float | None = None,
                          window_seconds: float = MAX_WINDOW_SECONDS, overlap_seconds: float = 5.0,
                          wav_out: Path | None = None, progress: bool = True, prompt: str | None = None,
                          text_guidance_scale: float | None = None) -> Soundtrack:
    """New music for ``[start, end)`` s of ``music_path`` (``model.regenerate``), the rest kept sample for sample.

    The output is as long as the music, not the video: the promise is that the music outside the range is the
    user's own, so nothing is cut or padded. It is not peak-normalised either (that would change every sample); the
    new part is put at the original's level instead. Written as ``make_soundtrack`` writes, in a WAV format that
    holds the music as read (``media.audio.lossless_subtype``).
    """
    import torch

    from media.audio import lossless_subtype, read_audio
    from model.regenerate import check_range, regenerate_range

    check_paths(video, out, wav_out, music_path)
    check_settings(guidance_scale, None, window_seconds, overlap_seconds)
    check_prompt(prompt, text_guidance_scale)
    check_model_takes_prompt(model, prompt)
    check_window(model, window_seconds)
    music, rate = read_audio(music_path, model.sample_rate)
    check_range(start, end, len(music) / rate, video_seconds(video))
    result = regenerate_range(model, video, torch.from_numpy(music), start, end, window_seconds, overlap_seconds,
                              seed=seed, guidance_scale=guidance_scale, progress=progress, prompt=prompt,
                              text_guidance_scale=text_guidance_scale)
    edited = result.music.numpy()
    write_outputs(video, out, wav_out, edited, rate, lossless_subtype(music_path, rate))
    return Soundtrack(out, wav_out, len(edited) / rate, edited, rate, result.plan)


def write_outputs(video: Path, out: Path, wav_out: Path | None, music: np.ndarray, rate: int,
                  subtype: str = "PCM_16") -> None:
    """``out`` (the video with ``music`` [S]) and ``wav_out``, atomically: a failure leaves no output and no
    temporary file behind."""
    from common.files import temporary_sibling
    from media.audio import write_wav
    from media.mux import mux_music

    tmp_wav = temporary_sibling(out, ".wav")
    try:
        write_wav(tmp_wav, music, rate, subtype)
        mux_music(video, tmp_wav, out)
        if wav_out is not None:
            write_wav(wav_out, music, rate, subtype)
    finally:
        tmp_wav.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_cli(lambda: run(args), debug=args.debug)


def run(args: argparse.Namespace) -> None:
    check_args(args)
    quiet_libraries()
    started = time.perf_counter()
    seconds = video_seconds(args.video)  # a file that is not a video fails here, before the model loads
    if args.music is not None:
        regenerate(args, seconds, started)
        return
    model = load_model(args).eval()
    result = make_soundtrack(model, args.video, args.out, seed=args.seed, guidance_scale=args.guidance_scale,
                             max_seconds=args.max_seconds, window_seconds=args.window_seconds,
                             overlap_seconds=args.overlap_seconds, wav_out=args.wav_out, progress=True,
                             prompt=args.prompt, text_guidance_scale=args.text_guidance_scale)
    print(f"wrote {args.out} ({result.seconds:.1f} s of music, seed {args.seed}) in "
          f"{time.perf_counter() - started:.1f} s")


def regenerate(args: argparse.Namespace, video_length: float, started: float) -> None:
    """``--music --regenerate``: check the range against the music and the video before loading the model."""
    from media.audio import read_audio
    from model.regenerate import check_range

    start, end = parse_range(args.regenerate)
    music, rate = read_audio(args.music)  # an unreadable file fails here, in one line
    check_range(start, end, len(music) / rate, video_length)
    model = load_model(args).eval()
    result = regenerate_soundtrack(model, args.video, args.music, start, end, args.out, seed=args.seed,
                                   guidance_scale=args.guidance_scale, window_seconds=args.window_seconds,
                                   overlap_seconds=args.overlap_seconds, wav_out=args.wav_out, progress=True,
                                   prompt=args.prompt, text_guidance_scale=args.text_guidance_scale)
    plan, rate = result.plan, result.sample_rate
    print(f"wrote {args.out} ({result.seconds:.1f} s of music; new from {plan.start / rate:.2f} s, back to "
          f"{args.music.name} at {plan.end_join / rate:.2f} s over {plan.end_fade / rate:.2f} s; changed "
          f"{plan.changed[0] / rate:.2f}-{plan.changed[1] / rate:.2f} s; seed {args.seed}) in "
          f"{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
