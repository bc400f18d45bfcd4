"""Music for a video of any length: windows of up to 30 s, each continuing the music of the one before (DESIGN.md §7).

With 30 s windows and a 5 s overlap (times in seconds, every window conditioned on its own stretch of video)::

    window 0:  [ 0, 30)   sampled from scratch
    window 1:  [25, 55)   codes of 25-30 s = window 0's last 5 s, fed as a prompt; 30-55 s sampled
    window 2:  [50, 80)   ...

The prompt is MusicGen's audio-prompt continuation done on codes (``model.sampling.sample_codes(prompt=...)``), so
each window hears the previous music *and* sees its own video. Each window's codes are decoded on their own and the
overlaps are joined with a crossfade whose gains sum to 1 (see ``crossfade_gains``). The overlap is longer than VidMuse's 0.5 s because users report
that long outputs sound like several different pieces. Only one window's frames, features and codes are held at a
time, so memory stays flat with the video's length (the output waveform aside).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm


@dataclass(frozen=True)
class Window:
    """A stretch of the music in codec frames from the video start; its first ``prompt`` frames repeat the previous
    window's last ones."""

    start: int
    end: int
    prompt: int

    @property
    def frames(self) -> int:
        return self.end - self.start


def plan_windows(total_frames: int, window_frames: int, overlap_frames: int) -> list[Window]:
    """Windows of at most ``window_frames`` covering ``[0, total_frames)``, each overlapping the previous one."""
    if not 0 <= overlap_frames < window_frames:
        raise ValueError(f"overlap ({overlap_frames} frames) must be >= 0 and shorter than a window ({window_frames})")
    windows = [Window(0, min(max(1, total_frames), window_frames), 0)]
    while windows[-1].end < total_frames:
        start = windows[-1].end - overlap_frames
        windows.append(Window(start, min(total_frames, start + window_frames), overlap_frames))
    return windows


def crossfade_gains(samples: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(fade_out, fade_in), each [samples]: a linear ramp, fade_out + fade_in = 1, exact ends (1, 0) and (0, 1).

    Why not the equal-power (sin/cos) fade DESIGN.md §7 names: both sides of a join decode the *same* prompt codes,
    so they are nearly identical signals, and an equal-power fade of identical signals swells by up to +3 dB
    (measured: +2.1 dB RMS over each 5 s overlap of a 10-minute output, a swell every 25 s). Gains summing to 1
    keep correlated signals at their level.
    """
    if samples < 2:
        raise ValueError(f"a crossfade needs at least 2 samples, got {samples}")
    fade_in = torch.linspace(0.0, 1.0, samples, device=device)
    return 1.0 - fade_in, fade_in


def crossfade(tail: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """Crossfade of the outgoing ``tail`` [n] into the incoming ``head`` [n] -> [n] (see ``crossfade_gains``)."""
    fade_out, fade_in = crossfade_gains(tail.shape[-1], tail.device)
    return tail * fade_out + head * fade_in


def window_codes(model, video: str | Path, window: Window, previous: torch.Tensor | None, seed: int,
                 guidance_scale: float | None = None, text: str | None = None,
                 text_guidance_scale: float | None = None) -> torch.Tensor:
    """Codes [1, K, window.frames] for one window, conditioned on its own stretch of video (and ``text``, an
    optional text prompt, the same for every window).

    ``previous`` [1, K, T'] is the previous window's codes; its last ``window.prompt`` frames start this window.
    Feature times count from the window start, so the time-aligned term covers the prompt steps too.
    """
    rate = model.frame_rate
    features = model.extract_features(video, start=window.start / rate, max_seconds=window.frames / rate)
    prompt = previous[:, :, previous.shape[-1] - window.prompt:] if window.prompt else None
    return model.generate_codes([features], window.frames / rate, seed=seed, guidance_scale=guidance_scale,
                                prompt=prompt, text=text, text_guidance_scale=text_guidance_scale)


def decode_window(model, codes: torch.Tensor) -> torch.Tensor:
    """Codes [1, K, T] -> waveform [T x samples per frame] (the codec rounds to whole frames; trimmed or padded)."""
    wav = model.codec.decode(codes)[0, 0].float()
    samples = codes.shape[-1] * samples_per_frame(model)
    return torch.nn.functional.pad(wav[:samples], (0, max(0, samples - wav.shape[-1])))


def samples_per_frame(model) -> int:
    if model.sample_rate % model.frame_rate:
        raise ValueError(f"sample rate {model.sample_rate} is not a whole number of codec frames ({model.frame_rate}/s)")
    return model.sample_rate // model.frame_rate


@torch.no_grad()
def generate_long(model, video: str | Path, seconds: float, window_seconds: float = 30.0,
                  overlap_seconds: float = 5.0, seed: int = 0, guidance_scale: float | None = None,
                  progress: bool = False, prompt: str | None = None,
                  text_guidance_scale: float | None = None) -> torch.Tensor:
    """Music for the first ``seconds`` of ``video``: float32 [round(seconds x sample_rate)] on the CPU.

    Window i samples with seed ``seed + i``, so the same seed gives the same music. ``prompt``: an optional text
    prompt for a model with a text encoder (every window reads it); None is video only.
    """
    windows = plan_windows(max(1, round(seconds * model.frame_rate)), round(window_seconds * model.frame_rate),
                           round(overlap_seconds * model.frame_rate))
    music = join_windows(model, video, windows, seed=seed, guidance_scale=guidance_scale, progress=progress,
                         prompt=prompt, text_guidance_scale=text_guidance_scale)
    return music[:round(seconds * model.sample_rate)]  # the codes cover whole frames: at least ``samples`` long


def shift_windows(windows: list[Window], offset: int, first_prompt: int) -> list[Window]:
    """``plan_windows``' plan moved to start at frame ``offset``, its first window continuing ``first_prompt`` frames
    of music that is already there (``model.regenerate`` continues the user's music this way)."""
    shifted = [Window(w.start + offset, w.end + offset, w.prompt) for w in windows]
    if not 0 <= first_prompt < shifted[0].frames:
        raise ValueError(f"a first prompt of {first_prompt} frames does not fit a window of {shifted[0].frames}")
    return [Window(shifted[0].start, shifted[0].end, first_prompt), *shifted[1:]]


@torch.no_grad()
def join_windows(model, video: str | Path, windows: list[Window], seed: int = 0, guidance_scale: float | None = None,
                 previous: torch.Tensor | None = None, progress: bool = False, prompt: str | None = None,
                 text_guidance_scale: float | None = None) -> torch.Tensor:
    """The windows' music joined: float32 [(windows[-1].end - windows[0].start) x samples per frame] on the CPU.

    ``previous`` [1, K, T'] holds the codes the first window continues (its last ``windows[0].prompt`` frames); the
    first window's audio is returned whole, prompt included, for the caller to join to what came before. Window i
    samples with seed ``seed + i``. Each window's audio stays on the model's device until its join is made, then
    moves to the CPU, so device memory does not grow with length.
    """
    was_training = model.training
    model.eval()
    hop = samples_per_frame(model)
    done, tail, codes = [], None, previous  # finished audio pieces; the last window's audio (its overlap to fade)
    for index, window in enumerate(tqdm(windows, desc="windows", unit="window", disable=not progress)):
        codes = window_codes(model, video, window, codes, seed + index, guidance_scale, prompt, text_guidance_scale)
        wav = decode_window(model, codes)
        if tail is not None and window.prompt:
            overlap = window.prompt * hop
            wav = torch.cat([crossfade(tail[tail.shape[0] - overlap:], wav[:overlap]), wav[overlap:]])
            done.append(tail[:tail.shape[0] - overlap].cpu())  # joined: this part of the music is final
        elif tail is not None:
            done.append(tail.cpu())
        tail = wav
    model.train(was_training)
    return torch.cat([*done, tail.cpu()])
