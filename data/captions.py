"""Captions built from a clip's ground truth (the synthetic sets): what a text prompt learns from offline.

A caption names four facts of the row (``data/schema.py`` ground truth): the instrument family of its General-MIDI
``program``, its ``key`` and ``mode``, a tempo word for its ``tempo`` (``TEMPO_WORDS``), and a mood word (the
synthetic mood from ``tags``, else one that follows the mode). Each fact has several phrasings and the sentence one
of several templates, chosen deterministically from (seed, clip id), so the same row always gets the same caption.

Two disjoint vocabularies: ``TRAIN`` phrasings and templates (what the dataset's ``caption`` column holds) and
``HELD_OUT`` ones, never produced for training, to test whether a prompt works beyond the sentences it was trained
on. ``tests/test_text_prompt.py`` checks that no held-out template or phrasing occurs in any train caption.

    caption_from_truth({"id": "syn0_000001", "program": 0, "key": "A", "mode": "minor", "tempo": 80.0, ...})
    -> "slow melancholic piano in A minor"   (for example)
"""
from __future__ import annotations

import random
from dataclasses import dataclass

# General-MIDI families: programs 8k..8k+7 (0-based) share a family.
FAMILIES = ("piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass", "reed",
            "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive", "sound effects")

# (upper BPM bound, word): slow < 85 <= moderate < 105 <= upbeat < 125 <= fast (the synthetic set spans 70-150).
TEMPO_WORDS = ((85.0, "slow"), (105.0, "moderate"), (125.0, "upbeat"), (float("inf"), "fast"))

MOOD_OF_MODE = {"major": "bright", "minor": "dark"}
MOOD_OF_TAG = {"bright-warm": "bright", "dark-cool": "dark"}  # the synthetic moods (data/synthetic/spec.py)


@dataclass(frozen=True)
class Vocabulary:
    """Phrasings of each fact and the sentence templates (fields: family, key, mode, tempo, mood)."""

    family: dict[str, tuple[str, ...]]
    mode: dict[str, tuple[str, ...]]
    tempo: dict[str, tuple[str, ...]]
    mood: dict[str, tuple[str, ...]]
    templates: tuple[str, ...]


TRAIN = Vocabulary(
    family={"piano": ("piano", "keys"), "chromatic percussion": ("mallets", "bells"), "organ": ("organ",),
            "guitar": ("guitar", "acoustic guitar"), "bass": ("bass",), "strings": ("strings", "solo strings"),
            "ensemble": ("string ensemble", "orchestral strings"), "brass": ("brass", "horns"),
            "reed": ("woodwinds", "saxophone"), "pipe": ("flute", "pipes"), "synth lead": ("synth lead",),
            "synth pad": ("synth pad", "pads"), "synth effects": ("synth effects",),
            "ethnic": ("world instruments",), "percussive": ("percussion",), "sound effects": ("sound effects",)},
    mode={"major": ("major",), "minor": ("minor",)},
    tempo={"slow": ("slow", "relaxed"), "moderate": ("moderate", "medium tempo"), "upbeat": ("upbeat", "lively"),
           "fast": ("fast", "energetic")},
    mood={"bright": ("bright", "happy", "warm"), "dark": ("dark", "melancholic", "moody")},
    templates=("{mood} {family} in {key} {mode}, {tempo}",
               "{tempo} {mood} {family} music in {key} {mode}",
               "a {mood}, {tempo} piece for {family} ({key} {mode})",
               "{family}, {key} {mode}, {tempo}, {mood}",
               "{tempo} {family} tune, {mood}, key of {key} {mode}",
               "{mood} and {tempo}: {family} in {key} {mode}"),
)

HELD_OUT = Vocabulary(
    family={"piano": ("pianoforte", "grand"), "chromatic percussion": ("glockenspiel", "chimes"),
            "organ": ("harmonium",), "guitar": ("six-string", "nylon strings"), "bass": ("low end",),
            "strings": ("violin family", "bowed solo"), "ensemble": ("string section", "chamber orchestra"),
            "brass": ("trumpets",), "reed": ("clarinet", "reeds"), "pipe": ("recorder", "piccolo"),
            "synth lead": ("synthesizer melody",), "synth pad": ("ambient wash", "soft synthesizer"),
            "synth effects": ("electronic textures",), "ethnic": ("folk instruments",),
            "percussive": ("drum kit",), "sound effects": ("foley",)},
    mode={"major": ("major",), "minor": ("minor",)},
    tempo={"slow": ("unhurried", "leisurely"), "moderate": ("mid-paced", "walking pace"),
           "upbeat": ("brisk", "bouncy"), "fast": ("rapid", "racing")},
    mood={"bright": ("sunny", "cheerful"), "dark": ("somber", "brooding")},
    templates=("imagine {family} playing something {mood} and {tempo}, tonality {key} {mode}",
               "{key} {mode} | {family} | {tempo} | {mood}",
               "soundtrack with {family}; feeling: {mood}; pace: {tempo}; home key {key} {mode}"),
)


def instrument_family(program: int) -> str:
    """The General-MIDI family of a 0-based program (0-127)."""
    if not 0 <= int(program) < 128:
        raise ValueError(f"General-MIDI programs are 0-127, got {program}")
    return FAMILIES[int(program) // 8]


def tempo_word(bpm: float) -> str:
    """slow / moderate / upbeat / fast (``TEMPO_WORDS``)."""
    return next(word for bound, word in TEMPO_WORDS if bpm < bound)


def mood_word(mode: str, tags: list[str] | None = None) -> str:
    """bright / dark: the synthetic mood named in ``tags``, else the one the mode suggests."""
    for tag in tags or []:
        if tag in MOOD_OF_TAG:
            return MOOD_OF_TAG[tag]
    return MOOD_OF_MODE[mode]


def caption_from_truth(row: dict, seed: int = 0, held_out: bool = False) -> str | None:
    """A caption of the row's ground truth, chosen from (seed, row id); None when the row has none.

    ``held_out`` uses the ``HELD_OUT`` templates and phrasings (tests of unseen wording) instead of ``TRAIN``.
    """
    if any(row.get(k) is None for k in ("program", "key", "mode", "tempo")) or row["mode"] not in MOOD_OF_MODE:
        return None
    vocabulary = HELD_OUT if held_out else TRAIN
    rng = random.Random(f"{seed}:{row['id']}:{'held-out' if held_out else 'train'}")  # str seeds: stable anywhere
    words = {"family": vocabulary.family[instrument_family(row["program"])], "mode": vocabulary.mode[row["mode"]],
             "tempo": vocabulary.tempo[tempo_word(float(row["tempo"]))],
             "mood": vocabulary.mood[mood_word(row["mode"], row.get("tags"))]}
    template = rng.choice(vocabulary.templates)
    return template.format(key=row["key"], **{name: rng.choice(options) for name, options in words.items()})


def caption_from_metadata(caption: str | None, title: str | None, tags: list[str] | None) -> str | None:
    """A curated clip's caption: the manifest's ``caption``, else its title and tags joined; None when all are empty."""
    if caption and caption.strip():
        return caption.strip()
    text = ", ".join(part.strip() for part in [title or "", *(tags or [])] if part and part.strip())
    return text or None
