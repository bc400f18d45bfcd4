"""Evaluate generated music against reference music and the videos (DESIGN.md section 5).

Score folders of wavs (clips matched by file stem; one sub-folder per system)::

    python eval.py --generated gen/ --reference music/ --videos clips/ --out report/ \
        [--metrics fad,kld,chroma,beat,av_align,clap] [--embedder vggish|clap|codec|mel]

Generate every system on the same test clips, with the same seeds and lengths, then score them::

    python eval.py generate --model default --dataset DATASET_DIR --split test \
        --systems ours,no_motion,unconditional --out runs/eval1 [--seconds 10] [--seed 0] [--limit 20]

Writes ``report.json`` (per clip and aggregate), ``report.md`` (systems x metrics, mean and 95 % bootstrap
interval) and ``plots/*.png``. Metrics whose model weights cannot be loaded are reported as "not computed".
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from common.cli import OneLineParser, add_device_arguments, guarded, quiet_libraries
from scoring.audio import ScoringError

SYSTEMS = ("ours", "no_motion", "unconditional")


def score_parser() -> argparse.ArgumentParser:
    from scoring.runner import EMBEDDERS, METRICS, Settings

    p = OneLineParser(prog="eval.py", description="Score generated music (see the module docstring).")
    p.add_argument("--generated", required=True, help="folder of <clip_id>.wav, or of one sub-folder per system")
    p.add_argument("--reference", help="folder of reference <clip_id>.wav (FAD, KLD, chroma, beat, CLAP need it)")
    p.add_argument("--videos", help="folder of <clip_id>.mp4 (AV-Align needs it)")
    p.add_argument("--out", required=True, help="report folder (created)")
    p.add_argument("--metrics", help=f"comma list from {','.join(METRICS)} (default: all whose inputs exist)")
    p.add_argument("--embedder", choices=EMBEDDERS, default="vggish",
                   help="FAD embedder; 'mel' is weight-free log-mel statistics, not comparable to papers")
    p.add_argument("--vggish-weights", help="local VGGish state dict (default: torch.hub cache / download)")
    p.add_argument("--codec-model", default=Settings.codec_model, help="EncodecModel folder or Hub id")
    p.add_argument("--clap-model", default=Settings.clap_model, help="ClapModel folder or Hub id")
    p.add_argument("--tagger", default=Settings.tagger_model, help="ASTForAudioClassification folder or Hub id")
    p.add_argument("--flow-width", type=int, help="compute AV-Align flow at this width (default: native size)")
    p.add_argument("--chroma-argmax", action="store_true", help="one-hot chroma frames (audiocraft's argmax)")
    p.add_argument("--max-plots", type=int, default=20, help="spectrogram plots for the first N clips")
    p.add_argument("--fad-bootstrap", type=int, default=200, help="resamples for FAD's interval (0: none)")
    return p


def generate_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="eval.py generate", description="Generate each system on a dataset split, then score.")
    p.add_argument("--model", required=True, help="model folder, Hub id, or 'default'")
    p.add_argument("--dataset", required=True, help="DATASET_DIR written by data/ (datasets.save_to_disk)")
    p.add_argument("--split", default="test")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma list from {','.join(SYSTEMS)}")
    p.add_argument("--no-motion-model", help="a model trained without the motion stream (fusion.use_motion=false) "
                   "for the no_motion system; default: --model with the motion tokens removed at inference")
    p.add_argument("--out", required=True, help="writes OUT/<system>/<clip_id>.wav, OUT/reference, OUT/report")
    p.add_argument("--seconds", type=float, help="music length per clip (default: the clip's duration)")
    p.add_argument("--seed", type=int, default=0, help="clip i uses seed + i, the same for every system")
    p.add_argument("--limit", type=int, help="only the first N clips of the split")
    p.add_argument("--overwrite", action="store_true",
                   help="start over: delete what an earlier eval.py generate wrote in --out (nothing else)")
    prompts = p.add_mutually_exclusive_group()
    prompts.add_argument("--prompt", help="one text prompt for every clip (a model with a text encoder); "
                         "the unconditional system ignores it")
    prompts.add_argument("--caption-prompts", action="store_true",
                         help="each clip's own `caption` column as its prompt (a clip without one gets none)")
    p.add_argument("--text-guidance-scale", type=float, help="how strongly the prompt steers (default: the model's)")
    add_device_arguments(p)
    p.epilog = "Scoring options (--metrics, --embedder, --flow-width ...) are passed on to the scoring step."
    return p


def score(args: argparse.Namespace, only: list[str] | None = None) -> Path:
    """Score the folders named in ``args``; write the report to ``args.out`` and return its path."""
    from scoring.av_align import ONSET_SAMPLE_RATE
    from scoring.report import build_report, clip_plot_path, plot_clip, write_report
    from scoring.runner import Settings, choose_metrics, find_inputs, load_models, run_scoring

    inputs = find_inputs(args.generated, args.reference, args.videos, only)
    settings = Settings(metrics=choose_metrics(args.metrics, inputs), embedder=args.embedder,
                        vggish_weights=args.vggish_weights, codec_model=args.codec_model, clap_model=args.clap_model,
                        tagger_model=args.tagger, flow_width=args.flow_width, chroma_argmax=args.chroma_argmax,
                        max_plots=args.max_plots, fad_bootstrap=args.fad_bootstrap)
    out = _output_folder(args.out)
    models = load_models(settings)

    def on_clip(clip, tracks, motion):
        plot_clip(clip_plot_path(out, clip), clip, tracks, motion, ONSET_SAMPLE_RATE)

    results = run_scoring(inputs, settings, models, on_clip)
    paths = {"generated": str(args.generated), "reference": args.reference, "videos": args.videos}
    report = build_report(results, settings, models, extra={"inputs": paths, "systems": list(inputs.systems)})
    write_report(out, report, settings)
    print((out / "report.md").read_text())
    return out


def model_identity(name: str | None) -> str | None:
    """What a resume must match: a local model folder by the hash of its config and weights (a model retrained in
    place is another model), a Hub id or ``default`` by name."""
    import hashlib

    folder = Path(name) if name else None
    if folder is None or not folder.is_dir():
        return name
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.json")) + sorted(folder.glob("*.safetensors")):
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return f"{folder.resolve()}#sha256:{digest.hexdigest()[:16]}"


def _generation_folder(out: Path, args: argparse.Namespace, precision: str):
    """``--out`` owned by ``eval.py generate``: WAVs of an earlier run are reused only when they were made by the
    same model (by content), no-motion model, dataset, split, length, seeds and precision; otherwise the run is
    refused with what changed (``--overwrite`` starts over, deleting only what this command wrote)."""
    from common.files import OwnedFolder

    params = {"model": model_identity(args.model), "no_motion_model": model_identity(args.no_motion_model),
              "dataset": str(Path(args.dataset).resolve()), "split": args.split, "seconds": args.seconds,
              "seed": args.seed, "precision": precision}
    for name in ("prompt", "caption_prompts", "text_guidance_scale"):  # only when set: older runs still resume
        value = getattr(args, name, None)
        if value is not None and value is not False:  # a scale of 0 is set (it ignores the prompt)
            params[name] = value
    folder = OwnedFolder(out, "eval.py generate", ScoringError, marker=".eval_generate.json")
    try:
        folder.prepare(params, overwrite=args.overwrite)
    except OSError as error:
        raise ScoringError(f"cannot create --out {out}: {error.strerror}") from None
    return folder


def _output_folder(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ScoringError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ScoringError(f"cannot create --out {out}: {error.strerror}") from None
    return out


def _systems(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in SYSTEMS]
    if unknown or not names:
        raise ScoringError(f"--systems must be a comma list from {','.join(SYSTEMS)}; got {text!r}")
    return names


def _dataset_rows(dataset_dir: Path, split: str, limit: int | None) -> list[dict]:
    """The split's rows (``id``, ``video_path``, ``music_path``, ``duration``, ``caption``), first ``limit`` of them."""
    from data.schema import read_split, row_caption

    if not dataset_dir.is_dir():
        raise ScoringError(f"--dataset {dataset_dir} is not a folder")
    try:
        rows = read_split(dataset_dir, split, limit)
    except ValueError as error:
        raise ScoringError(str(error).splitlines()[0]) from None
    return [{**{k: row[k] for k in ("id", "video_path", "music_path", "duration")}, "caption": row_caption(row)}
            for row in rows]


def _check_prompts(args: argparse.Namespace) -> None:
    """A given prompt has words and its scale is possible: checked before any model is loaded."""
    if args.prompt is not None and not args.prompt.strip():
        raise ScoringError("--prompt is empty: give a few words (\"calm piano, slow\") or leave it out")
    if args.text_guidance_scale is not None and not args.text_guidance_scale >= 0:
        raise ScoringError("--text-guidance-scale must be >= 0")


def _load_model(name: str, placement):
    try:
        from model.v2m import VideoToMusic
    except ImportError as error:
        raise ScoringError(f"the model package cannot be imported ({error})") from None
    try:
        return VideoToMusic.from_pretrained(name, device=placement).eval()
    except (OSError, ValueError) as error:
        raise ScoringError(f"cannot load model {name!r}: {str(error).splitlines()[0]}") from None


def _link_video(source: Path, target: Path) -> None:
    """Symlink the clip's video into the run folder (a copy where symlinks are not allowed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        tmp.symlink_to(source.resolve())
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _generate_row(model, row: dict, dataset_dir: Path, out: Path, systems: list[str], seconds: float | None,
                  seed: int, no_motion_model=None, prompt: str | None = None,
                  text_guidance_scale: float | None = None) -> dict:
    """All systems' music for one clip (same seed and length), the trimmed reference and the video link.

    ``no_motion`` is ``no_motion_model`` (trained without motion: the fair ablation) when given, else ``model``
    with the motion tokens removed at inference (cheap, but the model never saw that input in training).
    ``prompt``: the clip's text prompt for ``ours`` and ``no_motion`` (None: video only)."""
    from media.audio import read_audio, write_wav

    clip, video = row["id"], dataset_dir / row["video_path"]
    length = min(seconds or row["duration"], row["duration"])
    missing = [s for s in systems if not (out / s / f"{clip}.wav").is_file()]  # resume: seeds are fixed
    features = model.extract_features(str(video), max_seconds=length) if missing else None
    for system in missing:
        condition = features.without_motion() if system == "no_motion" else features
        generator = no_motion_model if system == "no_motion" and no_motion_model is not None else model
        text = None if system == "unconditional" else prompt
        wav = generator.generate([condition], seconds=length, seed=seed, guidance_scale=None,
                                 unconditional=system == "unconditional", prompt=text,
                                 text_guidance_scale=text_guidance_scale if text is not None else None)
        write_wav(out / system / f"{clip}.wav", wav[0].numpy(), model.sample_rate, subtype="FLOAT")
    music, rate = read_audio(dataset_dir / row["music_path"])
    write_wav(out / "reference" / f"{clip}.wav", music[: int(round(length * rate))], rate, subtype="FLOAT")
    _link_video(video, out / "videos" / f"{clip}.mp4")
    return {"seed": seed, "seconds": length, "video": str(video), "prompt": prompt}


def generate(args: argparse.Namespace, scoring_options: list[str]) -> Path:
    """Generate every system on the split's clips, record the seeds, then score like the first form."""
    from tqdm import tqdm

    from common.files import atomic_write_text

    systems, dataset_dir, out = _systems(args.systems), Path(args.dataset), Path(args.out)
    scoring = score_parser().parse_args(["--generated", str(out), "--reference", str(out / "reference"), "--videos",
                                         str(out / "videos"), "--out", str(out / "report"), *scoring_options])
    rows = _dataset_rows(dataset_dir, args.split, args.limit)  # every option checked before hours of generation
    _check_prompts(args)
    from common.device import placement_for

    placement = placement_for(args.device, args.precision)
    folder = _generation_folder(out, args, placement.precision)  # before loading: a refusal costs nothing
    model = _load_model(args.model, placement)
    no_motion_model = _load_model(args.no_motion_model, placement) if args.no_motion_model else None
    if (args.prompt is not None or args.caption_prompts) and any(
            getattr(m, "text_conditioner", None) is None for m in (model, no_motion_model) if m is not None):
        raise ScoringError("--prompt / --caption-prompts need a model with a text encoder (text.enabled in its "
                           "config); this one has none")
    folder.claim(*systems, "reference", "videos", "report", "manifest.json")
    manifest = {"model": args.model, "no_motion_model": args.no_motion_model or f"{args.model} without motion tokens",
                "dataset": str(dataset_dir), "split": args.split, "systems": systems,
                "sample_rate": model.sample_rate, "clips": {}, "skipped": {}}
    for index, row in enumerate(tqdm(rows, desc="generating", unit="clip")):
        try:
            manifest["clips"][row["id"]] = _generate_row(model, row, dataset_dir, out, systems, args.seconds,
                                                         args.seed + index, no_motion_model,
                                                         row["caption"] if args.caption_prompts else args.prompt,
                                                         args.text_guidance_scale)
        except (ValueError, OSError) as error:  # an unreadable clip is recorded, not fatal for the run
            manifest["skipped"][row["id"]] = str(error).splitlines()[0]
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return score(scoring, only=systems)


def main(argv: list[str] | None = None) -> int:
    """Every failure ends as one ``eval.py: error: ...`` line and a non-zero status (``common.cli.guarded``)."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    quiet_libraries()
    if argv[:1] == ["generate"]:
        parsed = generate_parser().parse_known_args(argv[1:])
        return guarded(lambda: generate(*parsed), prog="eval.py", debug=debug)
    parsed = score_parser().parse_args(argv)
    return guarded(lambda: score(parsed), prog="eval.py", debug=debug)


if __name__ == "__main__":
    sys.exit(main())
