"""Regenerate a range of existing music (issue 17): new music inside ``[start, end)``, the old music kept outside.

In samples of the music (``hop`` = samples per codec frame; every edge but the end join is on a frame)::

    original  |=========|~~~~~~~~~|.........................|~~~~~|===========|
                        a         b                         j    j+f
    [0, a)      the original, sample for sample
    [a, b)      the prompt: codes of the original's last ``overlap`` before ``start``, continued by the decoder;
                the original fades out and the decoded prompt fades in (long-form's join, ``crossfade``)
    [b, j)      new music, conditioned on the video there
    [j, j+f)    the new music fades back out into the original over about one beat
    [j+f, S)    the original, sample for sample

``b`` is ``start`` rounded to a codec frame; ``j`` is the first beat of the original at or after ``end`` (librosa's
beat tracker; past the last tracked beat, the grid is carried on at its median period), so the hand-back lands on
the old music's beat grid instead of anywhere inside a beat, and ``f`` is one beat period, so the old music is whole
again on the next beat. Fewer than two beats found: ``j`` is ``end`` itself.

The range is generated like a long video (``model.long_form``): windows of ``window_seconds``, the first continuing
the original's codes (re-encoded with ``model.codec``), the next ones the previous window's. The new music is scaled
by the gain the original was written at (decoding the original's own codes and comparing levels), so the level
does not jump at the joins although the file was peak-normalised when it was made; but never above the original's
own peak, so the edit cannot clip (measured with the demo model: at the matched gain alone, 3 of 5 edits clipped).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.errors import UserError
from model.long_form import crossfade, decode_window, join_windows, plan_windows, samples_per_frame, shift_windows

END_FADE_SECONDS = (0.05, 1.0)  # the end fade is one beat, kept in this range
NO_BEAT_FADE_SECONDS = 0.5  # the end fade when the beat tracker finds no beats
BEAT_CONTEXT_SECONDS = 15.0  # beats are tracked in this much music either side of ``end`` (cost flat with length)


@dataclass(frozen=True)
class RegenerationPlan:
    """Where the edit sits, in samples of the music (see the module docstring's picture) and in codec frames."""

    prompt_start: int  # a: the first sample that may differ from the original
    start: int  # b: where the new music is alone
    end_join: int  # j: the beat at or after ``end`` where the fade back to the original starts
    end_fade: int  # f: from j + f on, the original again
    first_frame: int  # the frame of ``a``: generation starts here, its first ``prompt_frames`` are the prompt
    prompt_frames: int
    last_frame: int  # generation ends before this frame (it covers j + f)

    @property
    def changed(self) -> tuple[int, int]:
        """The samples ``[a, j + f)`` that may differ from the original; all others are equal, bit for bit."""
        return self.prompt_start, self.end_join + self.end_fade


@dataclass(frozen=True)
class Regenerated:
    """What ``regenerate_range`` returns: ``music`` float32 [S] (the input's length) and where it was edited."""

    music: torch.Tensor
    plan: RegenerationPlan
    gain: float  # the factor the new music was scaled by (``fitted_gain``)


def check_range(start: float, end: float, music_seconds: float, video_seconds: float | None = None) -> None:
    """The range is a non-empty stretch inside the music and the video (one-line ``UserError`` naming the problem)."""
    if not (math.isfinite(start) and math.isfinite(end)):
        raise UserError(f"--regenerate {start:g}:{end:g}: start and end must be finite numbers of seconds")
    if start < 0:
        raise UserError(f"--regenerate {start:g}:{end:g}: the start must be >= 0")
    if end <= start:
        raise UserError(f"--regenerate {start:g}:{end:g}: the end must come after the start")
    if end > music_seconds:
        raise UserError(f"--regenerate {start:g}:{end:g}: the music is only {music_seconds:.2f} s long")
    if video_seconds is not None and end > video_seconds:
        raise UserError(f"--regenerate {start:g}:{end:g}: the video is only {video_seconds:.2f} s long")


def beat_samples(music: np.ndarray, rate: int, around: float) -> np.ndarray:
    """Beat positions (int64 samples from the music's start) that librosa tracks in the music near ``around`` s.

    Only ``BEAT_CONTEXT_SECONDS`` either side are analysed, so a long file costs no more than a short one.
    """
    import librosa

    first = max(0, round((around - BEAT_CONTEXT_SECONDS) * rate))
    stretch = music[first:round((around + BEAT_CONTEXT_SECONDS) * rate)]
    if stretch.size < rate // 4 or not np.any(stretch):
        return np.zeros(0, np.int64)
    # trim=False: keep the beats of quiet stretches at the edges too (trimmed, a quiet ending has no grid at all)
    _, beats = librosa.beat.beat_track(y=stretch, sr=rate, units="samples", trim=False)
    return np.asarray(beats, np.int64) + first


def end_join(music: np.ndarray, rate: int, end: float) -> tuple[int, int]:
    """(join, fade) in samples: the first beat at or after ``end`` and one beat period (clipped to
    ``END_FADE_SECONDS``). Past the last tracked beat the grid goes on at the median period; with fewer than two
    beats, ``end`` itself and ``NO_BEAT_FADE_SECONDS``. The fade is cut to the music that is left; one shorter than 2
    samples means the new music runs to the end."""
    beats, end_sample = beat_samples(music, rate, end), round(end * rate)
    if beats.size < 2:
        join, period = end_sample, NO_BEAT_FADE_SECONDS * rate
    else:
        period = float(np.median(np.diff(beats)))
        later = beats[beats >= end_sample]
        join = int(later[0]) if later.size else int(beats[-1] + math.ceil((end_sample - beats[-1]) / period) * period)
    fade = min(round(float(np.clip(period / rate, *END_FADE_SECONDS)) * rate), music.shape[0] - join)
    return (join, fade) if fade >= 2 else (music.shape[0], 0)


def plan_regeneration(music: np.ndarray, rate: int, hop: int, start: float, end: float,
                      overlap_frames: int) -> RegenerationPlan:
    """Where the edit of ``[start, end)`` seconds of ``music`` [S] sits (see ``RegenerationPlan``)."""
    check_range(start, end, music.shape[0] / rate)
    start_frame = round(start * rate / hop)
    prompt = min(overlap_frames, start_frame)
    join, fade = end_join(music, rate, end)
    last_frame = -(-(join + fade) // hop)
    if join < start_frame * hop or last_frame <= start_frame:
        raise UserError(f"--regenerate {start:g}:{end:g}: the range is shorter than one codec frame "
                        f"({hop / rate * 1000:g} ms)")
    return RegenerationPlan(prompt_start=(start_frame - prompt) * hop, start=start_frame * hop, end_join=join,
                            end_fade=fade, first_frame=start_frame - prompt, prompt_frames=prompt,
                            last_frame=last_frame)


def original_codes(model, music: torch.Tensor, plan: RegenerationPlan, frames: int) -> torch.Tensor:
    """Codes [1, K, frames] of the original from ``plan.first_frame`` on, encoded with up to a second of the music
    before it as context (the codec's convolutions would otherwise see zeros at the cut)."""
    hop = samples_per_frame(model)
    context = min(plan.first_frame, model.frame_rate)
    wav = music[(plan.first_frame - context) * hop:(plan.first_frame + frames) * hop]
    codes = model.codec.encode(wav.reshape(1, 1, -1))[:, :, context:context + frames]
    if codes.shape[-1] != frames:
        raise ValueError(f"the codec gave {codes.shape[-1]} frames for {frames} frames of music")
    return codes


def level_gain(model, music: torch.Tensor, codes: torch.Tensor, first_frame: int) -> float:
    """The gain the original was written at: RMS of the original over RMS of its own codes decoded [1, K, T].

    The model's raw output has no fixed level and the file was peak-normalised when made; decoding the original's
    codes reproduces its raw level, so this ratio puts the new music at the original's level. 1 when either is
    silent (nothing to match).
    """
    hop = samples_per_frame(model)
    decoded = decode_window(model, codes).cpu()
    original = music[first_frame * hop:first_frame * hop + decoded.shape[0]]
    rms = lambda x: float(x.double().square().mean().sqrt())  # noqa: E731
    return rms(original) / rms(decoded) if min(rms(original), rms(decoded)) > 1e-6 else 1.0


def fitted_gain(matched: float, new: torch.Tensor, music: torch.Tensor) -> float:
    """``matched`` (``level_gain``), lowered where it would take the new music [N] above the original's [S] peak.

    The original's peak is the loudest the user's music gets (infer.py wrote it at -1 dBFS); a linear crossfade of
    two signals under a peak stays under it, so nothing in the edit clips.
    """
    peak, new_peak = float(music.abs().max()), float(new.abs().max())
    return min(matched, peak / new_peak) if new_peak > 0 else matched


def splice(music: torch.Tensor, new: torch.Tensor, plan: RegenerationPlan) -> torch.Tensor:
    """The original [S] with ``new`` [>= j + f - a] (starting at sample ``a``) put in, faded at both ends.

    Only ``[a, j + f)`` is written: the rest is the original's own tensor values. The crossfades' gains are exactly
    1 and 0 at their outer ends, and the edit is clipped to [-1, 1] so that a WAV writer never rescales the file.
    """
    a, b, j, f = plan.prompt_start, plan.start, plan.end_join, plan.end_fade
    new = new[:j + f - a].to(music.dtype)
    edited = torch.cat([crossfade(music[a:b], new[:b - a]) if b > a else new[:0], new[b - a:j - a],
                        crossfade(new[j - a:], music[j:j + f]) if f else new[:0]])
    out = music.clone()
    out[a:j + f] = edited.clamp(-1.0, 1.0)
    return out


@torch.no_grad()
def regenerate_range(model, video: str | Path, music: torch.Tensor, start: float, end: float,
                     window_seconds: float = 30.0, overlap_seconds: float = 5.0, seed: int = 0,
                     guidance_scale: float | None = None, progress: bool = False, prompt: str | None = None,
                     text_guidance_scale: float | None = None) -> Regenerated:
    """New music for ``[start, end)`` seconds of ``music`` (float32 [S] at ``model.sample_rate``, mono), conditioned
    on the video there and continuing the music before it; everything outside ``plan.changed`` stays as it was.

    A range longer than a window is generated as a chain of windows (window i samples with seed ``seed + i``).
    ``prompt``: an optional text prompt (models with a text encoder).
    """
    rate, hop = model.sample_rate, samples_per_frame(model)
    music = music.detach().float().cpu()
    window_frames, overlap_frames = round(window_seconds * model.frame_rate), round(overlap_seconds * model.frame_rate)
    plan = plan_regeneration(music.numpy(), rate, hop, start, end, overlap_frames)
    frames = plan.last_frame - plan.first_frame
    windows = shift_windows(plan_windows(frames, window_frames, overlap_frames), plan.first_frame, plan.prompt_frames)
    codes = original_codes(model, music, plan, min(frames, window_frames, music.shape[0] // hop - plan.first_frame))
    continued = codes[:, :, :plan.prompt_frames] if plan.prompt_frames else None
    new = join_windows(model, video, windows, seed=seed, guidance_scale=guidance_scale, previous=continued,
                       progress=progress, prompt=prompt,
                       text_guidance_scale=text_guidance_scale)[:plan.changed[1] - plan.prompt_start]
    gain = fitted_gain(level_gain(model, music, codes, plan.first_frame), new, music)
    return Regenerated(splice(music, gain * new, plan), plan, gain)
