"""Does a text prompt move the music, and does it keep the sync? (issue 15, measured on a synthetic set's test split)

    python tools/prompt_effect.py generate --model models/demo --dataset DATASET --out RUN [--limit N]
    python tools/prompt_effect.py score --run RUN [--json OUT]

``generate`` makes, for each clip and with the same seed, music with no prompt and with four prompts built from the
clip's ground truth (``data/captions.py``):

    match         the clip's own facts, train phrasings
    contradict    another instrument family of the set, the other mode (and its mood), a tempo word for a tempo
                  30 % away (faster, or slower when that leaves the set's range); train phrasings
    match_held    / contradict_held: the same facts in the held-out phrasings and templates (never trained on)

``score`` reads the music back (``scoring/music_attributes.py``): the instrument family by a small classifier trained
on the set's own train-split renders sent through the model's codec (so it has heard the codec's artefacts), the
mode by Krumhansl-Schmuckler key estimation, the tempo by librosa's beat tracker; and the sync figures of
``tools/event_hits.py`` (event-hit lift, beat-grid hit). Each condition is compared with no prompt, paired per clip
(95 % bootstrap intervals): how far the music moves toward the prompt, and whether the sync stays.
The reference renders' own figures after the codec round trip are the classifier's and estimator's ceiling.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import OneLineParser, quiet_libraries, run_cli  # noqa: E402
from common.errors import UserError  # noqa: E402

CONDITIONS = ("none", "match", "contradict", "match_held", "contradict_held")
TEMPO_RANGE = (70.0, 150.0)  # the synthetic sets' tempi (data/synthetic/spec.py)
TEMPO_STEP = 1.3  # "a tempo word about 30 % away"


def contradicting_truth(row: dict, families_in_set: list[int]) -> dict:
    """The row with another instrument family of the set, the other mode and mood, and a tempo 30 % away.

    ``families_in_set``: one representative General-MIDI program per family the set renders (so the classifier,
    trained on the set, knows the prompted family). Chosen deterministically from the clip id."""
    from data.captions import instrument_family

    rng = random.Random(f"contradict:{row['id']}")
    own = instrument_family(row["program"])
    program = rng.choice([p for p in families_in_set if instrument_family(p) != own])
    mode = "minor" if row["mode"] == "major" else "major"
    tempo = float(row["tempo"]) * TEMPO_STEP
    if tempo > TEMPO_RANGE[1]:
        tempo = float(row["tempo"]) / TEMPO_STEP
    mood_tag = "dark-cool" if mode == "minor" else "bright-warm"
    return {**row, "program": program, "mode": mode, "tempo": tempo, "tags": [mood_tag]}


def prompts_for(row: dict, families_in_set: list[int]) -> tuple[dict[str, str | None], dict]:
    """{condition: prompt} and the contradicting truth (what the contradicting prompts ask for)."""
    from data.captions import caption_from_truth

    other = contradicting_truth(row, families_in_set)
    prompts = {"none": None, "match": caption_from_truth(row, seed=7), "contradict": caption_from_truth(other, seed=7),
               "match_held": caption_from_truth(row, seed=7, held_out=True),
               "contradict_held": caption_from_truth(other, seed=7, held_out=True)}
    return prompts, other


def family_programs(rows: list[dict]) -> list[int]:
    """One program per instrument family present in ``rows`` (the lowest), sorted."""
    from data.captions import instrument_family

    by_family: dict[str, int] = {}
    for row in rows:
        family = instrument_family(row["program"])
        by_family[family] = min(by_family.get(family, 128), int(row["program"]))
    return sorted(by_family.values())


# ------------------------------------------------------------------------------------------------------ generate

def generate(model_name: str, dataset: Path, out: Path, split: str, limit: int | None, seed: int,
             text_guidance_scale: float | None) -> None:
    """Every condition's music for each clip (same seed per clip), resumable: existing wavs are kept."""
    from tqdm import tqdm

    from common.files import atomic_write_json
    from data.schema import read_split
    from media.audio import write_wav
    from model.v2m import VideoToMusic

    rows = read_split(dataset, split, limit)
    families = family_programs(read_split(dataset, "train"))
    model = VideoToMusic.from_pretrained(model_name, device="cpu").eval()
    if model.text_conditioner is None:
        raise UserError(f"{model_name} has no text encoder: train one with text.enabled (issue 15)")
    manifest = {"model": model_name, "dataset": str(dataset), "split": split, "sample_rate": model.sample_rate,
                "families_in_set": families, "text_guidance_scale": text_guidance_scale, "clips": {}}
    for index, row in enumerate(tqdm(rows, desc="prompted clips", unit="clip")):
        prompts, other = prompts_for(row, families)
        truth = {k: row[k] for k in ("program", "key", "mode", "tempo")}
        manifest["clips"][row["id"]] = {"seed": seed + index, "prompts": prompts, "truth": truth,
                                        "asked": {k: other[k] for k in ("program", "mode", "tempo")}}
        missing = [c for c in CONDITIONS if not (out / c / f"{row['id']}.wav").is_file()]
        if not missing:
            continue
        features = model.extract_features(str(dataset / row["video_path"]), max_seconds=row["duration"])
        for condition in missing:
            wav = model.generate([features], seconds=row["duration"], seed=seed + index, prompt=prompts[condition],
                                 text_guidance_scale=text_guidance_scale)
            write_wav(out / condition / f"{row['id']}.wav", wav[0].numpy(), model.sample_rate, subtype="FLOAT")
    atomic_write_json(out / "manifest.json", manifest, indent=1)


# --------------------------------------------------------------------------------------------------------- score

def family_classifier(dataset: Path, model_name: str, limit: int | None = None):
    """A standardised logistic regression on ``timbre_features`` of the train split's renders after the codec
    round trip; returns (classifier, the codec's sample rate, ``rendered(row)``: a row's render after the trip)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from data.captions import instrument_family
    from data.schema import read_split
    from media.audio import read_audio
    from model.v2m import VideoToMusic
    from scoring.music_attributes import timbre_features
    from tools.codec_ceiling import round_trip

    model = VideoToMusic.from_pretrained(model_name, device="cpu")
    rate, apply = model.sample_rate, round_trip(model.codec)

    def rendered(row: dict) -> np.ndarray:
        wav, _ = read_audio(dataset / row["music_path"], sample_rate=rate)
        return apply(wav[: int(round(row["duration"] * rate))])

    train = read_split(dataset, "train", limit)
    x = np.stack([timbre_features(rendered(row), rate) for row in train])
    y = [instrument_family(row["program"]) for row in train]
    if len(set(y)) < 2:
        raise UserError(f"{dataset}: the train split renders {len(set(y))} instrument family; the classifier needs two")
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0)).fit(x, y)
    return classifier, rate, rendered


def _paired(figures: dict[str, dict[str, list[float]]], condition: str, name: str) -> dict:
    """The condition's mean of figure ``name`` and its paired difference from no prompt (same clips, same seeds)."""
    from scoring.stats import mean_ci

    a, b = np.asarray(figures[condition][name], float), np.asarray(figures["none"][name], float)
    return {"mean": mean_ci(a.tolist()), "minus_none": mean_ci((a - b).tolist())}


def score(run: Path, limit_train: int | None = None) -> dict:
    """Per condition: share of clips whose music reads as the asked family / mode, tempo movement toward the
    asked tempo, sync figures; each paired against no prompt. Also the ceilings (the renders after the codec)."""
    from tqdm import tqdm

    from data.captions import instrument_family, tempo_word
    from data.schema import read_split
    from media.audio import read_audio
    from data.music_key import estimate_key
    from scoring.music_attributes import estimate_tempo, timbre_features
    from scoring.stats import mean_ci
    from tools.codec_ceiling import clip_figures

    manifest = json.loads((run / "manifest.json").read_text())
    dataset = Path(manifest["dataset"])
    rows = {row["id"]: row for row in read_split(dataset, manifest["split"])}
    classifier, rate, rendered = family_classifier(dataset, manifest["model"], limit_train)
    figures: dict[str, dict[str, list[float]]] = {c: {} for c in (*CONDITIONS, "reference")}

    def add(condition: str, name: str, value: float) -> None:
        figures[condition].setdefault(name, []).append(float(value))

    for clip, info in tqdm(manifest["clips"].items(), desc="scoring", unit="clip"):
        row, truth, asked = rows[clip], info["truth"], info["asked"]
        own_family, asked_family = instrument_family(truth["program"]), instrument_family(asked["program"])
        sources = {c: run / c / f"{clip}.wav" for c in CONDITIONS}
        for condition in (*CONDITIONS, "reference"):
            if condition == "reference":
                wav = rendered(row)
            else:
                wav, file_rate = read_audio(sources[condition])
                if file_rate != rate:
                    raise UserError(f"{sources[condition]}: {file_rate} Hz, expected {rate} Hz")
            family = classifier.predict(timbre_features(wav, rate)[None])[0]
            _, mode, _ = estimate_key(wav, rate)
            tempo = estimate_tempo(wav, rate)
            add(condition, "family_own", family == own_family)
            add(condition, "family_asked", family == asked_family)
            add(condition, "mode_own", mode == truth["mode"])
            add(condition, "mode_asked", mode == asked["mode"])
            add(condition, "tempo_word_asked", tempo > 0 and tempo_word(tempo) == tempo_word(asked["tempo"]))
            direction = math.copysign(1.0, asked["tempo"] - truth["tempo"])
            # log2 of the estimated over the true tempo, signed so that + is toward the asked tempo
            add(condition, "tempo_toward_asked",
                direction * math.log2(tempo / truth["tempo"]) if tempo > 0 else float("nan"))
            sync = clip_figures(wav, rate, row, 0.1)
            add(condition, "lift", sync["lift"])
            add(condition, "grid", sync.get("grid", float("nan")))
    result = {"clips": len(manifest["clips"]), "model": manifest["model"], "conditions": {}}
    for condition in (*CONDITIONS, "reference"):
        result["conditions"][condition] = {
            name: _paired(figures, condition, name) if condition in CONDITIONS[1:] else {"mean": mean_ci(values)}
            for name, values in figures[condition].items()}
    return result


def format_table(result: dict) -> str:
    """Markdown: one row per condition; mean [95 % interval] and, for prompts, the paired change from no prompt."""
    names = ("family_asked", "family_own", "mode_asked", "mode_own", "tempo_word_asked", "tempo_toward_asked", "lift",
             "grid")

    def cell(entry: dict) -> str:
        m = entry["mean"]
        text = f"{m['mean']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"
        if "minus_none" in entry:
            d = entry["minus_none"]
            text += f" (Δ {d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}])"
        return text

    lines = ["| condition | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for condition, entries in result["conditions"].items():
        lines.append(f"| {condition} | " + " | ".join(cell(entries[n]) for n in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(prog="tools/prompt_effect.py", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("generate", help="music per clip for each prompt condition")
    make.add_argument("--model", default="models/demo")
    make.add_argument("--dataset", required=True, type=Path, help="a synthetic set (captions from ground truth)")
    make.add_argument("--split", default="test")
    make.add_argument("--out", required=True, type=Path)
    make.add_argument("--limit", type=int)
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--text-guidance-scale", type=float)
    read = commands.add_parser("score", help="read the music back and compare each prompt with none")
    read.add_argument("--run", required=True, type=Path)
    read.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    quiet_libraries()

    def job() -> None:
        if args.command == "generate":
            generate(args.model, args.dataset, args.out, args.split, args.limit, args.seed, args.text_guidance_scale)
            return
        result = score(args.run)
        print(format_table(result))
        if args.json:
            from common.files import atomic_write_json

            atomic_write_json(args.json, result, indent=1)

    run_cli(job, prog=parser.prog)


if __name__ == "__main__":
    main()
