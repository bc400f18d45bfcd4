"""Stage 1 of the demo recipe: pretrain a small MusicGen decoder on music alone, to serve as the frozen base.

    python -m training.pretrain_decoder --config demo --dataset DATASET_DIR --output-dir runs/demo-base \
        [--extra-music DIR ...] [--resume | --overwrite] [--device auto] [--precision auto] [section.key=value ...]

Why: the real presets start from MusicGen, which already knows music; a decoder trained here from scratch must
learn music before it can learn to follow a video (MuVi found this pretraining essential). Every step here is
unconditional (the null condition of ``model/guidance.py``, exactly what guidance uses), so the decoder becomes the
"unconditional" branch; ``train.py`` then adds the fusion and LoRA on top of it, frozen, as with the real presets.

Runs through the shared loop of ``training/loop.py`` (checkpoints, exact resume, logging, output-folder rules).
Writes ``OUTPUT_DIR/decoder/`` (a ``MusicgenForCausalLM`` folder: config.json + model.safetensors) — point
``decoder.base`` at it — plus resumable checkpoints and ``metrics.jsonl``; the validation split's music gives a
held-out loss (a decoder that memorises its training pieces shows it there).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import Dataset

from common.cli import OneLineParser, add_device_arguments, quiet_libraries, run_cli
from common.errors import UserError

AUDIO_SUFFIXES = (".wav", ".ogg", ".flac", ".mp3")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(description="Pretrain the demo decoder on music alone.")
    parser.add_argument("--config", required=True, help="preset (demo) or YAML path; decoder.codec must be set")
    parser.add_argument("--dataset", required=True, help="clip dataset folder: its train split's music is used")
    parser.add_argument("--extra-music", nargs="*", default=[], help="more folders of audio files (any length)")
    parser.add_argument("--output-dir", required=True)
    run = parser.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_const", const="latest", default=None,
                     help="continue from the latest checkpoint")
    run.add_argument("--overwrite", action="store_true", help="start again in a folder that holds an earlier run")
    add_device_arguments(parser, training=True)
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("overrides", nargs="*", help="config overrides like train.lr=1e-3")
    return parser.parse_args(argv)


def music_files(dataset_dir: Path, split: str, extra: list[str]) -> list[Path]:
    from training.batches import load_split

    files = [dataset_dir / row["music_path"] for row in load_split(dataset_dir, split)]
    for folder in extra:
        files += sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    return files


class CodeCrops(Dataset):
    """Item i = micro-step ``first + i``: random equal-length crops [B, K, frames] of the pieces (shorter ones
    padded; lengths [B]), deterministic by step and process."""

    def __init__(self, codes: list, batch_size: int, frames: int, seed: int, first: int, last: int, rank: int = 0):
        self.codes, self.batch_size, self.frames, self.seed = codes, batch_size, frames, seed
        self.first, self.last, self.rank = first, last, rank

    def __len__(self) -> int:
        return max(0, self.last - self.first)

    def __getitem__(self, index: int) -> "CodeBatch":
        step = self.first + index
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step + 7_777 * self.rank)
        picks = torch.randint(0, len(self.codes), (self.batch_size,), generator=generator).tolist()
        return crop_pieces([self.codes[i] for i in picks], self.frames, generator)


class CodeBatch:
    """codes long [B, K, T] and lengths [B]."""

    def __init__(self, codes: torch.Tensor, lengths: torch.Tensor):
        self.codes, self.lengths = codes, lengths

    def to(self, device, non_blocking: bool = False) -> "CodeBatch":
        return CodeBatch(self.codes.to(device, non_blocking=non_blocking),
                         self.lengths.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "CodeBatch":
        return CodeBatch(self.codes.pin_memory(), self.lengths.pin_memory())


def crop_pieces(pieces: list, frames: int, generator: torch.Generator | None) -> CodeBatch:
    """A crop of ``frames`` of each piece (at a random start, or the start when ``generator`` is None)."""
    batch = torch.zeros(len(pieces), pieces[0].shape[0], frames, dtype=torch.long)
    lengths = torch.zeros(len(pieces), dtype=torch.long)
    for b, piece in enumerate(pieces):
        start = 0 if generator is None else int(torch.randint(0, max(1, piece.shape[-1] - frames + 1), (1,),
                                                              generator=generator))
        crop = piece[:, start:start + frames].long()
        batch[b, :, : crop.shape[-1]], lengths[b] = crop, crop.shape[-1]
    return CodeBatch(batch, lengths)


def unconditional_loss(decoder, codes: torch.Tensor, lengths: torch.Tensor, start_token: int, width: int,
                       dtype: torch.dtype) -> torch.Tensor:
    """Cross-entropy of codes [B, K, T] under the null condition (``model.guidance``: zero states, zero mask).

    ``decoder`` may be the DDP-wrapped module, so its width and dtype are passed in."""
    from model.delay import training_pair
    from model.guidance import null_condition
    from training.loss import codebook_cross_entropy

    inputs, labels = training_pair(codes, start_token, start_token, lengths)
    batch, num_codebooks, steps = inputs.shape
    template = torch.ones(batch, 1, width, dtype=dtype, device=codes.device)
    hidden, mask = null_condition(template, torch.ones(batch, 1, dtype=torch.long, device=codes.device))
    logits = decoder(input_ids=inputs.reshape(batch * num_codebooks, steps), encoder_hidden_states=hidden,
                     encoder_attention_mask=mask).logits
    return codebook_cross_entropy(logits.reshape(batch, num_codebooks, steps, -1), labels)


class DecoderTask:
    """Pretrain every weight of the decoder, unconditionally (``training.loop.TrainTask``)."""

    final_name = "decoder"

    def __init__(self, decoder, train, codes: list, held_out: list, frames: int):
        self.model, self.train, self.codes, self.held_out, self.frames = decoder, train, codes, held_out, frames
        self.start_token = decoder.config.vocab_size

    def batches(self, first: int, last: int, rank: int, world: int):
        from training.batches import loader

        crops = CodeCrops(self.codes, self.train.batch_size, self.frames, self.train.seed, first, last, rank)
        return loader(crops, self.train.num_workers, self.train.pin_memory and self.model.device.type == "cuda")

    def loss(self, model, batch) -> torch.Tensor:
        return unconditional_loss(model, batch.codes, batch.lengths, self.start_token, *self._null_shape())

    def _null_shape(self) -> tuple[int, torch.dtype]:
        return self.model.config.hidden_size, self.model.dtype

    @torch.no_grad()
    def validate(self, model, accelerator) -> dict:
        if not self.held_out:
            return {}
        self.model.eval()
        mine = self.held_out[accelerator.process_index::accelerator.num_processes]
        totals = torch.zeros(2, device=accelerator.device)
        for first in range(0, len(mine), self.train.batch_size):
            batch = crop_pieces(mine[first:first + self.train.batch_size], self.frames, None).to(accelerator.device)
            loss = unconditional_loss(self.model, batch.codes, batch.lengths, self.start_token, *self._null_shape())
            totals += torch.stack([loss.float(),
                                   torch.ones((), device=accelerator.device)])
        self.model.train()
        loss, batches = accelerator.reduce(totals, "sum").tolist()
        return {"val_loss": loss / batches if batches else None}

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().float().cpu().contiguous() for k, v in self.model.state_dict().items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        self.model.load_state_dict(state)

    def save_final(self, folder: Path) -> None:
        from common.files import replace_folder
        from model.checkpoint import save_base_decoder

        with replace_folder(folder) as new:  # a kill mid-save leaves the previous decoder whole
            save_base_decoder(self.model, new)


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
    from common.device import placement_for
    from data.features import encode_music_files
    from model.decoder import load_musicgen
    from training import loop

    train, dataset = config.train, Path(args.dataset)
    placement = placement_for(args.device, args.precision, training=True)
    accelerator = loop.make_accelerator(train, placement)
    placement = placement_for(accelerator.device, args.precision, training=True)
    torch.manual_seed(train.seed)
    decoder, codec = load_musicgen(config.decoder, placement)
    decoder.to(placement.device).train()
    codec.to(placement.device)
    accelerator.print("encoding the music once (the codec runs in data.features)")
    codes = encode_music_files(codec, music_files(dataset, "train", args.extra_music),
                               progress=accelerator.is_local_main_process)
    held_out = encode_music_files(codec, music_files(dataset, "validation", []), progress=False)
    if not codes:
        raise UserError(f"{dataset}: no music to pretrain on")
    task = DecoderTask(decoder, train, codes, held_out, round(train.clip_seconds * codec.frame_rate))
    loop.run(task, train, Path(args.output_dir), placement, args.resume, args.overwrite, config.to_dict(),
             accelerator, desc="pretraining")


if __name__ == "__main__":
    main()
