"""Stage 1 of the demo recipe: pretrain a small MusicGen decoder on music alone, to serve as the frozen base.

    python -m training.pretrain_decoder --config demo --dataset DATASET_DIR --output-dir runs/demo-base \
        [--extra-music DIR ...] [--resume] [section.key=value ...]

Why: the real presets start from MusicGen, which already knows music; a decoder trained here from scratch must
learn music before it can learn to follow a video (MuVi found this pretraining essential). Every step here is
unconditional (the null condition, exactly what guidance uses), so the decoder becomes the "unconditional"
branch; ``train.py`` then adds the fusion and LoRA on top of it, frozen, as with the real presets.

Writes ``OUTPUT_DIR/decoder/`` (a ``MusicgenForCausalLM`` folder: config.json + model.safetensors) — point
``decoder.base`` at it — plus resumable checkpoints and ``metrics.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from cli import UserError, quiet_libraries, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Pretrain the demo decoder on music alone.")
    parser.add_argument("--config", required=True, help="preset (demo) or YAML path; decoder.codec must be set")
    parser.add_argument("--dataset", required=True, help="clip dataset folder: its train split's music is used")
    parser.add_argument("--extra-music", nargs="*", default=[], help="more folders of audio files (any length)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("overrides", nargs="*", help="config overrides like train.lr=1e-3")
    return parser.parse_args(argv)


def music_codes(dataset_dir: Path, extra: list[str], codec) -> list:
    """Codes [K, T] of every train-split music file and every extra audio file (encoded once, kept in memory)."""
    import librosa
    import torch
    from tqdm.auto import tqdm

    from training.clips import load_split, read_music

    files = [dataset_dir / row["music_path"] for row in load_split(dataset_dir, "train")]
    for folder in extra:
        files += sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".wav", ".ogg", ".flac", ".mp3"))
    codes = []
    for path in tqdm(files, desc="encoding music", unit="file"):
        if path.suffix.lower() == ".wav":
            wav = read_music(path, codec.sample_rate)
        else:
            wav = torch.from_numpy(librosa.load(str(path), sr=codec.sample_rate, mono=True)[0])[None, None]
        codes.append(codec.encode(wav)[0].to(torch.int16))
    return codes


def crop_batch(codes: list, step: int, batch_size: int, frames: int, seed: int):
    """Random equal-length crops [B, K, frames] (shorter pieces padded; lengths [B]), deterministic by step."""
    import torch

    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    picks = torch.randint(0, len(codes), (batch_size,), generator=generator).tolist()
    batch = torch.zeros(batch_size, codes[0].shape[0], frames, dtype=torch.long)
    lengths = torch.zeros(batch_size, dtype=torch.long)
    for b, i in enumerate(picks):
        piece = codes[i]
        start = int(torch.randint(0, max(1, piece.shape[-1] - frames + 1), (1,), generator=generator))
        crop = piece[:, start:start + frames].long()
        batch[b, :, : crop.shape[-1]], lengths[b] = crop, crop.shape[-1]
    return batch, lengths


def unconditional_loss(decoder, codes, lengths, start_token: int):
    """Cross-entropy of codes [B, K, T] under the null condition (one zero state, masked)."""
    import torch

    from model.delay import training_pair
    from model.v2m import codebook_cross_entropy

    inputs, labels = training_pair(codes, start_token, start_token, lengths)
    batch, num_codebooks, steps = inputs.shape
    hidden = torch.zeros(batch, 1, decoder.config.hidden_size)
    mask = torch.zeros(batch, 1, dtype=torch.long)
    logits = decoder(input_ids=inputs.reshape(batch * num_codebooks, steps), encoder_hidden_states=hidden,
                     encoder_attention_mask=mask).logits
    return codebook_cross_entropy(logits.reshape(batch, num_codebooks, steps, -1), labels)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_cli(lambda: run(args), debug=args.debug)


def run(args: argparse.Namespace) -> None:
    from model.config import load_config

    config = load_config(args.config, args.overrides)
    if config.decoder.codec is None:
        raise UserError("pretraining here is for a decoder with a codec fitted here (decoder.codec); "
                        "the real presets start from MusicGen")
    quiet_libraries()
    import torch
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    from model.decoder import load_musicgen
    from model.v2m import save_base_decoder
    from training.checkpoint import list_checkpoints, load_checkpoint, restore_optimizer, save_checkpoint

    train, out = config.train, Path(args.output_dir)
    torch.manual_seed(train.seed)
    decoder, codec = load_musicgen(config.decoder)
    decoder.train()
    codes = music_codes(Path(args.dataset), args.extra_music, codec)
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, train.warmup_steps, train.max_steps)
    start = 0
    if args.resume and list_checkpoints(out / "checkpoints"):
        state = load_checkpoint(list_checkpoints(out / "checkpoints")[-1], 0)
        decoder.load_state_dict(state["trainable"])
        restore_optimizer(optimizer, state["optimizer"], state["param_groups"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start = state["step"]
        print(f"resumed at step {start}")
    out.mkdir(parents=True, exist_ok=True)
    frames = round(train.clip_seconds * codec.frame_rate)
    start_token = decoder.config.vocab_size
    started = time.perf_counter()
    for step in tqdm(range(start, train.max_steps), initial=start, total=train.max_steps, desc="pretraining"):
        batch, lengths = crop_batch(codes, step, train.batch_size, frames, train.seed)
        loss = unconditional_loss(decoder, batch, lengths, start_token)
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"loss became {loss.item()} at step {step + 1}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), train.max_grad_norm)
        optimizer.step(), scheduler.step(), optimizer.zero_grad(set_to_none=True)
        with (out / "metrics.jsonl").open("a") as log:
            log.write(json.dumps({"step": step + 1, "loss": loss.item(),
                                  "seconds": round(time.perf_counter() - started, 1)}) + "\n")
        if (step + 1) % train.save_every == 0 or step + 1 == train.max_steps:
            state = {k: v.detach().contiguous() for k, v in decoder.state_dict().items()}
            save_checkpoint(out / "checkpoints", step + 1, state, optimizer, scheduler, config.to_dict(),
                            train.keep_checkpoints, [torch.get_rng_state()])
            save_base_decoder(decoder, out / "decoder")
    print(f"saved {out / 'decoder'}")


if __name__ == "__main__":
    main()
