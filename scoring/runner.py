"""Scoring folders of generated music: find the clips, load the models, compute every metric per clip.

Clips are matched by file stem: ``<clip_id>.wav`` in each system's folder and in the reference folder,
``<clip_id>.mp4`` in the videos folder. A generated folder holding sub-folders of wavs is one system per
sub-folder (``ours``, ``no_motion``, ``unconditional`` ...); a folder of wavs is a single system. Every model
that cannot be loaded (weights not downloadable offline) turns its metric into "not computed: <why>".
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.error import URLError

import numpy as np
from tqdm import tqdm

from common.errors import UserError
from media.audio import read_audio, resample
from scoring.audio import ScoringError
from scoring.av_align import ONSET_SAMPLE_RATE, MotionPeaks, audio_onsets, av_align_iou, video_motion_peaks
from scoring.beats import BEAT_SAMPLE_RATE, beat_scores, beat_times
from scoring.chroma import CHROMA_SAMPLE_RATE, chroma_cosine, chroma_undefined
from scoring.clap import CLAP_MODEL, clap_score
from scoring.kld import AST_MODEL, kld_both

METRICS = ("fad", "kld", "chroma", "beat", "av_align", "clap")
NEEDS_REFERENCE = {"fad", "kld", "chroma", "beat", "clap"}
NEEDS_VIDEO = {"av_align"}
EMBEDDERS = ("vggish", "clap", "codec", "mel")
REFERENCE_SYSTEM = "reference"
LOAD_ERRORS = (OSError, URLError, ValueError, ImportError, RuntimeError)


@dataclass
class Settings:
    """What to compute and with which models (the command-line options of ``eval.py``)."""

    metrics: list[str]
    embedder: str = "vggish"
    vggish_weights: str | None = None
    codec_model: str = "facebook/encodec_32khz"
    clap_model: str = CLAP_MODEL
    tagger_model: str = AST_MODEL
    flow_width: int | None = None
    chroma_argmax: bool = False
    max_plots: int = 20
    fad_bootstrap: int = 200


@dataclass
class Inputs:
    """Files by clip id: ``systems[name][clip]`` generated wavs, ``reference[clip]`` wavs, ``videos[clip]`` mp4s."""

    systems: dict[str, dict[str, Path]]
    reference: dict[str, Path] = field(default_factory=dict)
    videos: dict[str, Path] = field(default_factory=dict)

    @property
    def clip_ids(self) -> list[str]:
        return sorted(set().union(*(clips.keys() for clips in self.systems.values())))


def _wavs(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.wav")) if p.is_file()}


def _folder(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise ScoringError(f"{what} folder {path} does not exist or is not a folder")
    return path


def find_inputs(generated: str | Path, reference: str | Path | None = None, videos: str | Path | None = None,
                only: list[str] | None = None) -> Inputs:
    """Match files by stem; sub-folders of ``generated`` with wavs are systems (the reference folder excluded).

    ``only`` keeps just the named system sub-folders (the ``generate`` command scores exactly what it made).
    """
    root = _folder(generated, "generated")
    ref_dir = _folder(reference, "reference").resolve() if reference else None
    systems = {d.name: _wavs(d) for d in sorted(root.iterdir()) if d.is_dir() and d.resolve() != ref_dir}
    systems = {name: clips for name, clips in systems.items() if clips and (only is None or name in only)}
    if _wavs(root) and only is None:
        systems = {root.name: _wavs(root), **systems}
    if not systems:
        raise ScoringError(f"no .wav files in {root} or its sub-folders")
    inputs = Inputs(systems, _wavs(ref_dir) if ref_dir else {},
                    {p.stem: p for p in sorted(_folder(videos, "videos").glob("*.mp4"))} if videos else {})
    if reference and not set(inputs.clip_ids) & set(inputs.reference):
        raise ScoringError(f"no generated clip has a reference of the same name in {reference}")
    if videos and not set(inputs.clip_ids) & set(inputs.videos):
        raise ScoringError(f"no generated clip has a video <clip_id>.mp4 in {videos}")
    return inputs


def choose_metrics(requested: str | None, inputs: Inputs) -> list[str]:
    """Metrics to run: the requested ones (each must have its inputs) or, by default, all that can run."""
    if requested is None:
        return [m for m in METRICS if (m not in NEEDS_REFERENCE or inputs.reference)
                and (m not in NEEDS_VIDEO or inputs.videos)]
    names = [m.strip() for m in requested.split(",") if m.strip()]
    for name in names:
        if name not in METRICS:
            raise ScoringError(f"unknown metric {name!r}; choose from {','.join(METRICS)}")
        if name in NEEDS_REFERENCE and not inputs.reference:
            raise ScoringError(f"metric {name} needs --reference (a folder of <clip_id>.wav reference music)")
        if name in NEEDS_VIDEO and not inputs.videos:
            raise ScoringError(f"metric {name} needs --videos (a folder of <clip_id>.mp4 videos)")
    if not names:
        raise ScoringError("--metrics is empty")
    return names


@dataclass
class Models:
    """Loaded models (``None`` when not needed or not loadable) and why a metric is not computed."""

    embedder: object | None = None
    tagger: object | None = None
    clap: object | None = None
    not_computed: dict[str, str] = field(default_factory=dict)


def _try_load(loader: Callable[[], object], what: str) -> tuple[object | None, str | None]:
    """Run ``loader``; on a missing download return ``(None, "not computed: ...")`` instead of failing."""
    try:
        return loader(), None
    except LOAD_ERRORS as error:
        reason = str(error).strip().splitlines()[0][:400] if str(error).strip() else type(error).__name__
        return None, f"not computed: {what} could not be loaded ({reason})"


def build_embedder(settings: Settings) -> object:
    """The FAD embedder named by ``settings.embedder`` (loads weights; raises when they are unavailable)."""
    if settings.embedder == "vggish":
        from scoring.vggish import load_vggish
        return load_vggish(settings.vggish_weights)
    if settings.embedder == "clap":
        from scoring.clap import load_clap
        return load_clap(settings.clap_model)
    if settings.embedder == "codec":
        from scoring.embedders import load_codec_embedder
        return load_codec_embedder(settings.codec_model)
    if settings.embedder == "mel":
        from scoring.embedders import MelStatsEmbedder
        return MelStatsEmbedder()
    raise ScoringError(f"unknown embedder {settings.embedder!r}; choose from {','.join(EMBEDDERS)}")


def load_models(settings: Settings) -> Models:
    """Load only the models the chosen metrics need; record a reason for each one that fails."""
    from scoring.clap import load_clap
    from scoring.kld import load_ast_tagger

    models = Models()
    wanted = [("fad", "embedder", lambda: build_embedder(settings), f"FAD embedder {settings.embedder}"),
              ("kld", "tagger", lambda: load_ast_tagger(settings.tagger_model), f"tagger {settings.tagger_model}"),
              ("clap", "clap", lambda: load_clap(settings.clap_model), f"CLAP model {settings.clap_model}")]
    for metric, attribute, loader, what in wanted:
        if metric in settings.metrics:
            model, reason = _try_load(loader, what)
            setattr(models, attribute, model)
            if reason:
                models.not_computed[metric] = reason
    return models


class ClipAudio:
    """One audio file, loaded once and resampled on demand (each metric has its own rate)."""

    def __init__(self, path: Path):
        self.wav, self.sample_rate = read_audio(path)
        self._by_rate: dict[int, np.ndarray] = {self.sample_rate: self.wav}

    @property
    def seconds(self) -> float:
        return len(self.wav) / self.sample_rate

    def at(self, rate: int) -> np.ndarray:
        """``[samples]`` mono float32 at ``rate``."""
        if rate not in self._by_rate:
            self._by_rate[rate] = resample(self.wav, self.sample_rate, rate)
        return self._by_rate[rate]


@dataclass
class Reference:
    """What each system's version of one clip is compared with (computed once per clip)."""

    audio: ClipAudio | None = None
    beats: np.ndarray | None = None
    tags: np.ndarray | None = None
    clap: np.ndarray | None = None
    embedding: np.ndarray | None = None
    motion: MotionPeaks | None = None


@dataclass
class Results:
    """``per_clip[system][clip][metric]`` values, FAD embeddings ``[T, D]`` by system and clip, and notes."""

    per_clip: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    embeddings: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    reference_embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    undefined: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # [system][clip][metric] = why
    clip_seconds: list[float] = field(default_factory=list)  # wall time per clip, all systems
    audio_seconds: list[float] = field(default_factory=list)  # length of the generated audio per clip


def _active(metric: str, settings: Settings, models: Models) -> bool:
    return metric in settings.metrics and metric not in models.not_computed


def reference_features(clip: str, inputs: Inputs, models: Models, settings: Settings,
                       seconds: float, skipped: list[str]) -> Reference:
    """Reference-side features of ``clip``; motion peaks cover the first ``seconds`` of its video.

    An unreadable reference or video is noted in ``skipped`` and leaves the metrics that need it empty.
    """
    ref = Reference()
    for folder, what in ((inputs.reference, "reference music"), (inputs.videos, "video")):
        if folder and clip not in folder:
            skipped.append(f"{clip}: no {what} with this name; metrics that need it skip the clip")
    try:
        if clip in inputs.reference:
            ref.audio = ClipAudio(inputs.reference[clip])
            _reference_audio_features(ref, models, settings)
    except UserError as error:
        ref = Reference()
        skipped.append(f"reference {clip}: {error}")
    try:
        if clip in inputs.videos and _active("av_align", settings, models):
            ref.motion = video_motion_peaks(inputs.videos[clip], seconds, settings.flow_width)
    except UserError as error:
        skipped.append(f"video {clip}: {error}")
    return ref


def _reference_audio_features(ref: Reference, models: Models, settings: Settings) -> None:
    if _active("beat", settings, models):
        ref.beats = beat_times(ref.audio.at(BEAT_SAMPLE_RATE))
    if _active("kld", settings, models):
        ref.tags = models.tagger(ref.audio.at(models.tagger.sample_rate))
    if _active("clap", settings, models):
        ref.clap = models.clap(ref.audio.at(models.clap.sample_rate))
    if _active("fad", settings, models):
        ref.embedding = models.embedder(ref.audio.at(models.embedder.sample_rate))


def system_metrics(gen: ClipAudio, ref: Reference, models: Models, settings: Settings, wants: set[str],
                   undefined: dict[str, str] | None = None) -> tuple[dict[str, float], np.ndarray, np.ndarray | None]:
    """Per-clip metrics of one generated clip -> ``(values, onset times [O], FAD embedding [T, D] or None)``.

    Reference beats and video peaks after the end of the generated clip are ignored (they could not be hit).
    A metric the clip gives no value for is NaN (left out of every mean) and its reason goes into ``undefined``.
    """
    values: dict[str, float] = {}
    undefined = {} if undefined is None else undefined
    onsets = audio_onsets(gen.at(ONSET_SAMPLE_RATE))
    if ref.motion is not None and "av_align" in wants:
        peaks = ref.motion.peaks[ref.motion.peaks < gen.seconds]
        values["av_align"] = av_align_iou(onsets, peaks, ref.motion.fps)
        if len(onsets) + len(peaks) == 0:
            undefined["av_align"] = "neither music onsets nor video motion peaks (nothing to align)"
    if ref.audio is not None and "chroma" in wants:
        generated, reference = gen.at(CHROMA_SAMPLE_RATE), ref.audio.at(CHROMA_SAMPLE_RATE)
        values["chroma_cosine"] = chroma_cosine(generated, reference, argmax=settings.chroma_argmax)
        why = chroma_undefined(generated, reference)
        if why:
            undefined["chroma_cosine"] = why
    if ref.beats is not None and "beat" in wants:
        beats = ref.beats[ref.beats < gen.seconds]
        values.update(beat_scores(beat_times(gen.at(BEAT_SAMPLE_RATE)), beats))
        if len(beats) == 0:
            undefined["bcs"] = undefined["bhs"] = (f"the reference has no beat in the first {gen.seconds:.1f} s"
                                                   " (silent, too short or beatless)")
    if ref.tags is not None and "kld" in wants:
        values.update(kld_both(models.tagger(gen.at(models.tagger.sample_rate))[None], ref.tags[None]))
    if ref.clap is not None and "clap" in wants:
        values["clap_audio"] = clap_score(models.clap(gen.at(models.clap.sample_rate)), ref.clap)
    embedding = None
    if ref.embedding is not None and "fad" in wants:
        embedding = models.embedder(gen.at(models.embedder.sample_rate))
    return values, onsets, embedding


# on_clip(clip_id, tracks, motion): tracks are (system, wav at 22,050 Hz, onset times) for plotting.
ClipCallback = Callable[[str, list[tuple[str, np.ndarray, np.ndarray]], MotionPeaks | None], None]


def _load_generated(clip: str, inputs: Inputs, skipped: list[str]) -> dict[str, ClipAudio]:
    audio = {}
    for system, clips in inputs.systems.items():
        try:
            if clip in clips:
                audio[system] = ClipAudio(clips[clip])
        except UserError as error:
            skipped.append(f"{system} {clip}: {error}")
    return audio


def score_clip(clip: str, inputs: Inputs, models: Models, settings: Settings, results: Results,
               on_clip: ClipCallback | None = None) -> None:
    """Score every system's version of ``clip`` against its reference and video, adding to ``results``."""
    generated = _load_generated(clip, inputs, results.skipped)
    if not generated:
        return
    seconds = max(audio.seconds for audio in generated.values())
    ref = reference_features(clip, inputs, models, settings, seconds, results.skipped)
    wants = {m for m in settings.metrics if m not in models.not_computed}
    tracks = []
    for system, audio in generated.items():
        undefined: dict[str, str] = {}
        values, onsets, embedding = system_metrics(audio, ref, models, settings, wants, undefined)
        results.per_clip.setdefault(system, {})[clip] = values
        if undefined:
            results.undefined.setdefault(system, {})[clip] = undefined
        if embedding is not None:
            results.embeddings.setdefault(system, {})[clip] = embedding
        tracks.append((system, audio.at(ONSET_SAMPLE_RATE), onsets))
    if ref.embedding is not None:
        results.reference_embeddings[clip] = ref.embedding
    if ref.audio is not None and ref.motion is not None:  # the real music's alignment: a ceiling to compare with
        onsets = audio_onsets(ref.audio.at(ONSET_SAMPLE_RATE))
        results.per_clip.setdefault(REFERENCE_SYSTEM, {})[clip] = {
            "av_align": av_align_iou(onsets, ref.motion.peaks, ref.motion.fps)}
        tracks.append((REFERENCE_SYSTEM, ref.audio.at(ONSET_SAMPLE_RATE), onsets))
    results.audio_seconds.append(seconds)
    if on_clip is not None:
        on_clip(clip, tracks, ref.motion)


def run_scoring(inputs: Inputs, settings: Settings, models: Models,
                on_clip: ClipCallback | None = None) -> Results:
    """Score all clips (progress bar over clips); ``on_clip`` is called for the first ``settings.max_plots``."""
    results = Results()
    for index, clip in enumerate(tqdm(inputs.clip_ids, desc="scoring", unit="clip")):
        start = time.perf_counter()
        score_clip(clip, inputs, models, settings, results, on_clip if index < settings.max_plots else None)
        results.clip_seconds.append(time.perf_counter() - start)
    return results
