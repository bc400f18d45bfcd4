"""Stage 0 of the demo recipe: fit the spectral codec (model/spectral_codec.py) and measure it on held-out music.

    python -m training.fit_codec --config demo --dataset DATASET_DIR --out models/demo-codec \
        [--extra-music DIR ...] [--frames 60000] [--held-out 12]

Frames come from the train split's music (and any extra folders); quality is measured on the test split's first
``--held-out`` clips against the originals: log-mel distance, onset F-measure (mir_eval, 50 ms) and chroma cosine.
Writes ``OUT/codec.safetensors`` and ``OUT/quality.json``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from common.cli import quiet_libraries, run_cli
from common.errors import UserError
from common.files import atomic_write_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fit the demo's spectral codec.")
    parser.add_argument("--config", default="demo")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--extra-music", nargs="*", default=[])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--num-codebooks", type=int, default=4)
    parser.add_argument("--frames", type=int, default=60000, help="log-magnitude frames sampled for k-means")
    parser.add_argument("--held-out", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--debug", action="store_true")
    return parser.parse_args(argv)


def quality(original: np.ndarray, decoded: np.ndarray, sample_rate: int) -> dict:
    """Reconstruction figures of one piece: log-mel L1 distance (dB), onset F-measure, chroma cosine."""
    import librosa
    import mir_eval

    n = min(len(original), len(decoded))
    original, decoded = original[:n], decoded[:n]
    mels = [librosa.power_to_db(librosa.feature.melspectrogram(y=x, sr=sample_rate, n_mels=64), ref=1.0)
            for x in (original, decoded)]
    onsets = [librosa.onset.onset_detect(y=x, sr=sample_rate, units="time") for x in (original, decoded)]
    f_measure = mir_eval.onset.f_measure(onsets[0], onsets[1], window=0.05)[0] if len(onsets[0]) else float("nan")
    chroma = [librosa.feature.chroma_stft(y=x, sr=sample_rate).mean(axis=1) for x in (original, decoded)]
    cosine = float(chroma[0] @ chroma[1] / (np.linalg.norm(chroma[0]) * np.linalg.norm(chroma[1]) + 1e-9))
    return {"mel_l1_db": float(np.abs(mels[0] - mels[1]).mean()), "onset_f": float(f_measure), "chroma_cosine": cosine}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_cli(lambda: run(args), debug=args.debug)


def run(args: argparse.Namespace) -> None:
    quiet_libraries()
    import torch

    from model.config import load_config
    from model.spectral_codec import SpectralCodec, fit_codebooks
    from training.batches import load_split

    settings = load_config(args.config).decoder.codec or {}
    sample_rate, n_fft, hop = settings.get("sample_rate", 32000), settings.get("n_fft", 2048), settings.get("hop", 640)
    probe = SpectralCodec(torch.zeros(1, 1, n_fft // 2 + 1), sample_rate, n_fft, hop)
    dataset = Path(args.dataset)
    files = [dataset / row["music_path"] for row in load_split(dataset, "train")]
    for folder in args.extra_music:
        files += sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".wav", ".ogg", ".flac", ".mp3"))
    if not files:
        raise UserError("no music to fit the codec on")
    frames = np.concatenate([probe.log_magnitude(_load(path, sample_rate))[0].numpy() for path in files])
    rng = np.random.default_rng(args.seed)
    sample = frames[rng.permutation(len(frames))[: args.frames]]
    started = time.perf_counter()
    codebooks = fit_codebooks(sample, args.num_codebooks, args.codebook_size, seed=args.seed)
    fit_seconds = time.perf_counter() - started
    codec = SpectralCodec(codebooks, sample_rate, n_fft, hop, settings.get("griffin_lim_iters", 48))
    args.out.mkdir(parents=True, exist_ok=True)
    codec.save(args.out / "codec.safetensors")
    held_out = [dataset / row["music_path"] for row in load_split(dataset, "test")][: args.held_out]
    scores = [quality(_load(p, sample_rate)[0, 0].numpy(),
                      codec.decode(codec.encode(_load(p, sample_rate)))[0, 0].numpy(), sample_rate)
              for p in held_out]
    summary = {k: float(np.nanmean([s[k] for s in scores])) for k in scores[0]} if scores else {}
    report = {"fit_seconds": round(fit_seconds, 1), "frames_total": int(len(frames)), "frames_fitted": int(len(sample)),
              "files": len(files), "held_out_clips": len(scores), "mean": summary, "per_clip": scores}
    atomic_write_json(args.out / "quality.json", report)
    print(json.dumps({k: v for k, v in report.items() if k != "per_clip"}, indent=2))


def _load(path: Path, sample_rate: int):
    """Any audio file -> float32 [1, 1, S] mono at ``sample_rate`` (the codec's input)."""
    import torch

    from media.audio import read_audio

    return torch.from_numpy(read_audio(path, sample_rate)[0])[None, None]


if __name__ == "__main__":
    main()
