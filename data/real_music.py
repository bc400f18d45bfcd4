"""Recorded music with a photo-world video cut on its accents (issue 19's "real music" lever).

Why: every training clip so far pairs a video with a FluidSynth render of a generated score, so the decoder only
ever learns to follow video with that one kind of music. Here windows of recorded, freely licensed soundtracks
(Debian's ``singularity-music`` by default) become clips: librosa finds each window's beats and onset strength, the
strongest beats (at least two beats apart, about one beat in four) become the window's events, and a photo-world
video (``data/photo_world.py``: real pictures, a camera panning at the found tempo) is drawn with a cut or an impact
exactly there. The pairing is the synthetic set's, turned around: there the music is written for the events, here
the events are placed on the music.

    python -m data.real_music --out OUT [--music DIR ...] [--seconds 8] [--per-track 24] [--split train]
                              [--pictures DIR ...] [--seed 0] [--workers 1] [--overwrite]

Rows follow the clip schema with the synthetic set's ground truth where it can be read from the audio:
``beat_times`` and ``tempo`` (librosa's beat tracker), ``event_times`` (the chosen beats), ``key`` and ``mode``
(``data/music_key.py``); ``program`` and ``caption`` are ``None`` (no instrument is known). Ids are
``rmu<track>_<window>``, ``video_id`` is ``rmu<track>`` (so no track is in two splits); every row goes to
``--split``. ``MUSIC.md`` lists the tracks and where their licences are. Windows that are near silent or where the
tracker finds fewer than ``MIN_BEATS`` beats at 60-200 BPM are skipped. An existing ``--out`` with the same
settings is resumed.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import UserError
from data.schema import MUSIC_SAMPLE_RATE, SPLITS, save_clip_rows, write_schema_file

GENERATOR_VERSION = 1  # bump when the same music and settings would give a different clip
ID_PREFIX = "rmu"
DEFAULT_MUSIC = ("/usr/share/games/singularity/music",)  # Debian's singularity-music (CC BY-SA 3.0)
AUDIO_SUFFIXES = (".ogg", ".oga", ".opus", ".flac", ".wav", ".mp3", ".m4a")
HOP = 512  # onset-envelope hop at 32 kHz: 16 ms
MIN_BEATS = 6
BPM_RANGE = (60.0, 200.0)
SILENT_DBFS = -40.0  # a window quieter than this (RMS) is skipped
EVENTS_PER_BEAT = 0.25  # at most one event per four beats, as the synthetic set's density (0.35 of free beats)
EVENT_MIN_GAP_BEATS = 2


class RealMusicError(UserError):
    """A clear, one-line problem with the music folders or the output folder."""


@dataclass(frozen=True)
class WindowTruth:
    """What librosa reads from one window: seconds from the window's start."""

    tempo: float
    beat_times: tuple[float, ...]
    event_times: tuple[float, ...]
    key: str
    mode: str


def find_tracks(folders: list[str | Path]) -> list[Path]:
    """Audio files under ``folders`` (recursively), sorted, so track numbers are stable for the same folders."""
    tracks = set()
    for folder in map(Path, folders):
        if folder.is_file() and folder.suffix.lower() in AUDIO_SUFFIXES:
            tracks.add(folder.resolve())
        elif folder.is_dir():
            tracks.update(p.resolve() for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    return sorted(tracks)


def pick_events(beat_times: np.ndarray, strength: np.ndarray) -> list[float]:
    """The strongest beats, greedily, at least ``EVENT_MIN_GAP_BEATS`` apart: [B] beat times and onset strengths ->
    event times (sorted). At most ``EVENTS_PER_BEAT`` of the beats, at least one; only beats stronger than the
    median beat count, so a window of even strength gets one event, not a random handful."""
    limit = max(1, int(len(beat_times) * EVENTS_PER_BEAT))
    floor = float(np.median(strength))
    chosen: list[int] = []
    for index in np.argsort(-strength, kind="stable"):
        if len(chosen) >= limit or (chosen and strength[index] <= floor):
            break
        if all(abs(int(index) - other) >= EVENT_MIN_GAP_BEATS for other in chosen):
            chosen.append(int(index))
    return sorted(float(beat_times[i]) for i in chosen)


def analyse_window(wav: np.ndarray, sample_rate: int) -> WindowTruth | None:
    """Mono [N] -> beats, tempo, events, key and mode; None for a window too quiet or without a steady beat."""
    import librosa

    from data.music_key import estimate_key
    from media.audio import rms_dbfs

    if rms_dbfs(wav) < SILENT_DBFS:
        return None
    envelope = librosa.onset.onset_strength(y=wav, sr=sample_rate, hop_length=HOP)  # [frames]
    tempo, beats = librosa.beat.beat_track(onset_envelope=envelope, sr=sample_rate, hop_length=HOP, units="frames")
    tempo = float(np.atleast_1d(tempo)[0])
    if len(beats) < MIN_BEATS or not BPM_RANGE[0] <= tempo <= BPM_RANGE[1]:
        return None
    # Accents by the flux of the *linear* mel power: the beat tracker's log-power flux saturates, so a beat four
    # times louder than its neighbours hardly stands out in it (measured on a click track: 21.7 against 18.6-24.2).
    power = librosa.feature.melspectrogram(y=wav, sr=sample_rate, hop_length=HOP)  # [mels, frames]
    accent = librosa.onset.onset_strength(S=power, sr=sample_rate)  # [frames]
    strength = np.array([accent[max(0, b - 2):b + 3].max() for b in beats])  # the peak within +-32 ms
    beat_times = librosa.frames_to_time(beats, sr=sample_rate, hop_length=HOP)
    key, mode, _ = estimate_key(wav, sample_rate)
    return WindowTruth(tempo=tempo, beat_times=tuple(round(float(t), 6) for t in beat_times),
                       event_times=tuple(round(t, 6) for t in pick_events(beat_times, strength)), key=key, mode=mode)


def window_starts(track_seconds: float, seconds: float, per_track: int) -> list[int]:
    """Indices k of the non-overlapping windows [k * seconds, (k + 1) * seconds) to use: up to ``per_track``,
    spread evenly over the track."""
    count = int(track_seconds // seconds)
    if count <= per_track:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, per_track)})


def plan_rows(tracks: list[Path], seconds: float, per_track: int, progress: bool = True) -> list[dict]:
    """Analyse every chosen window (nothing is written yet, so a set with no usable window leaves no folder behind).
    Returns one dict per usable window: id, video_id, start, duration, track, truth."""
    from tqdm import tqdm

    rows = []
    for track_index, track in enumerate(tqdm(tracks, desc="real-music windows", unit="track", disable=not progress)):
        audio = _read_track(track)
        if audio is None:
            continue
        size = int(round(seconds * MUSIC_SAMPLE_RATE))
        for k in window_starts(len(audio) / MUSIC_SAMPLE_RATE, seconds, per_track):
            truth = analyse_window(np.ascontiguousarray(audio[k * size:(k + 1) * size]), MUSIC_SAMPLE_RATE)
            if truth is not None:
                rows.append({"id": f"{ID_PREFIX}{track_index:03d}_{k:03d}", "video_id": f"{ID_PREFIX}{track_index:03d}",
                             "start": k * seconds, "duration": seconds, "track": str(track), "truth": truth})
    return rows


def _read_track(track: Path) -> np.ndarray | None:
    """The whole track, mono float32 [N] at 32 kHz; None (with a one-line note) when it cannot be read."""
    from media.audio import AudioError, read_audio

    try:
        return read_audio(track, MUSIC_SAMPLE_RATE)[0]
    except AudioError as error:
        print(f"skipping a track: {error}", file=sys.stderr)
        return None


def write_windows(rows: list[dict], out_dir: Path) -> None:
    """Each row's window as ``music/<id>.wav`` (32 kHz mono, peak -1 dBFS), unless an earlier run wrote it; written
    under a temporary name, then renamed, so a killed run leaves no half file under the real name."""
    from media.audio import peak_normalise, write_wav

    by_track: dict[str, list[dict]] = {}
    for row in rows:
        if not (out_dir / "music" / f"{row['id']}.wav").is_file():
            by_track.setdefault(row["track"], []).append(row)
    for track, todo in by_track.items():
        audio = _read_track(Path(track))
        if audio is None:
            raise RealMusicError(f"{track} could be read a moment ago and now cannot")
        for row in todo:
            first = int(round(row["start"] * MUSIC_SAMPLE_RATE))
            wav = audio[first:first + int(round(row["duration"] * MUSIC_SAMPLE_RATE))]
            music = out_dir / "music" / f"{row['id']}.wav"
            partial = music.with_name(f"{row['id']}.partial.wav")
            write_wav(partial, peak_normalise(np.ascontiguousarray(wav)), MUSIC_SAMPLE_RATE)
            partial.replace(music)


def clip_row(base: dict, spec) -> dict:
    """A schema row: the window's ground truth, its media paths, a title naming the track and the events."""
    truth: WindowTruth = base["truth"]
    kinds = sorted({kind for _, kind in spec.events})
    return {
        "id": base["id"], "video_id": base["video_id"], "video_path": f"clips/{base['id']}.mp4",
        "music_path": f"music/{base['id']}.wav", "start": base["start"], "duration": base["duration"],
        "title": (f"real music: {Path(base['track']).stem} {base['start']:g}-{base['start'] + base['duration']:g} s, "
                  f"{truth.tempo:.0f} BPM, {truth.key} {truth.mode}; photo world {spec.width}x{spec.height} "
                  f"{spec.fps} fps crf {spec.crf}; events " + ", ".join(f"{kind}@{t:.3f}" for t, kind in spec.events)),
        "tags": ["real_music", truth.mode, *kinds], "caption": None,
        "event_times": list(truth.event_times), "beat_times": list(truth.beat_times), "tempo": truth.tempo,
        "key": truth.key, "mode": truth.mode, "program": None,
    }


def write_music_file(out_dir: Path, rows: list[dict]) -> None:
    """``MUSIC.md``: each track used, how many windows, and its Debian package's licence file."""
    from common.files import atomic_write_text
    from data.photo_world import debian_packages

    uses: dict[str, int] = {}
    for row in rows:
        uses[row["track"]] = uses.get(row["track"], 0) + 1
    packages = debian_packages(list(uses))
    lines = ["# Music used by this real-music set", "",
             "Windows of these recordings are the clips' music (cut, resampled to 32 kHz mono, peak-normalised).", "",
             "| track | package (or folder) | windows |", "|---|---|---|"]
    lines += [f"| `{track}` | {packages.get(track) or Path(track).parent} | {count} |" for track, count in uses.items()]
    names = sorted(set(packages.values()))
    if names:
        lines += ["", "Licences: " + ", ".join(f"`/usr/share/doc/{name}/copyright`" for name in names) + "."]
    atomic_write_text(out_dir / "MUSIC.md", "\n".join(lines) + "\n")


def generate(out_dir: str | Path, music: list[str | Path] = DEFAULT_MUSIC, seconds: float = 8.0, per_track: int = 24,
             split: str = "train", pictures: list[str | Path] | None = None, seed: int = 0, workers: int = 1,
             overwrite: bool = False, progress: bool = True):
    """Make the set in ``out_dir``; returns the ``DatasetDict``."""
    from common.files import OwnedFolder
    from data.photo_world import DEFAULT_PICTURES, make_clip, media_paths, picture_pool, plan_clip, write_pictures_file
    from data.synthetic.build import prepare_out_dir, render_clips

    if split not in SPLITS:
        raise RealMusicError(f"--split must be one of {', '.join(SPLITS)}")
    if not 2.0 <= seconds <= 60.0 or per_track < 1:
        raise RealMusicError("need 2 <= --seconds <= 60 and --per-track >= 1")
    out_dir = Path(out_dir)
    tracks = find_tracks(music)
    if not tracks:
        raise RealMusicError(f"found no audio files ({'/'.join(AUDIO_SUFFIXES)}) under {', '.join(map(str, music))}; "
                             "install Debian's singularity-music or pass --music DIR")
    folders = [str(Path(p)) for p in (pictures or DEFAULT_PICTURES)]
    pool = picture_pool(folders)
    params = {"generator_version": GENERATOR_VERSION, "seed": seed, "seconds": seconds, "per_track": per_track,
              "split": split, "tracks": [[str(t), t.stat().st_size] for t in tracks], "pictures": folders,
              "n_pictures": len(pool)}
    planned = plan_rows(tracks, seconds, per_track, progress)
    if not planned:
        raise RealMusicError(f"no window of the {len(tracks)} track(s) has a steady beat ({MIN_BEATS}+ beats at "
                             f"{BPM_RANGE[0]:g}-{BPM_RANGE[1]:g} BPM) above {SILENT_DBFS:g} dBFS")
    prepare_out_dir(out_dir, params, overwrite, "data.real_music", RealMusicError)
    OwnedFolder(out_dir, "data.real_music", RealMusicError).claim("features", "PICTURES.md", "MUSIC.md")
    write_windows(planned, out_dir)
    specs, rows = [], []
    for index, base in enumerate(planned):
        truth, music_path = base["truth"], (out_dir / "music" / f"{base['id']}.wav").resolve()
        source = {"id": base["id"], "event_times": list(truth.event_times), "duration": base["duration"],
                  "tempo": truth.tempo, "key": truth.key, "mode": truth.mode, "program": None}
        spec = dataclasses.replace(plan_clip(source, index, seed, {}, pool, str(music_path)),
                                   id=base["id"], source_id=base["id"])
        specs.append(spec)
        rows.append(clip_row(base, spec))
    todo = [s for s in specs if not all(p.is_file() for p in media_paths(out_dir, s.id))]
    render_clips(make_clip, todo, len(specs), out_dir, "", "", workers, "real-music clips", progress)
    dataset = save_clip_rows(out_dir, {split: rows})
    write_pictures_file(out_dir, specs, pool)
    write_music_file(out_dir, planned)
    write_schema_file(out_dir, "real_music", n=len(rows), n_tracks=len(tracks), sample_rate=MUSIC_SAMPLE_RATE,
                      **{k: v for k, v in params.items() if k != "tracks"})
    return dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.real_music", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="dataset folder (resumed if it exists)")
    parser.add_argument("--music", nargs="+", default=list(DEFAULT_MUSIC),
                        help="audio files or folders searched recursively (default: Debian's singularity-music)")
    parser.add_argument("--seconds", type=float, default=8.0, help="window (clip) length in seconds (default 8)")
    parser.add_argument("--per-track", type=int, default=24, help="at most this many windows per track (default 24)")
    parser.add_argument("--split", default="train", choices=SPLITS, help="the split every row goes to (default train)")
    parser.add_argument("--pictures", nargs="+", default=None,
                        help="picture folders for the videos (default: Debian's wallpapers, as data.photo_world)")
    parser.add_argument("--seed", type=int, default=0, help="set seed (>= 0) for the videos' look")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering clips in parallel (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="delete this tool's earlier output in --out first")
    args = parser.parse_args(argv)
    if args.seed < 0 or args.workers < 1:
        parser.error("need --seed >= 0 and --workers >= 1")
    try:
        dataset = generate(args.out, args.music, args.seconds, args.per_track, args.split, args.pictures, args.seed,
                           args.workers, args.overwrite)
    except UserError as error:
        print(f"python -m data.real_music: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: " + ", ".join(f"{name} {len(dataset[name])}" for name in SPLITS) + " rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
