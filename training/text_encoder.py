"""A small T5 text encoder trained here, for models that cannot download MusicGen's T5 (the offline demo, issue 15).

It has the interface of MusicGen's own: a ``T5EncoderModel`` read through ByT5's byte tokenizer (no vocabulary
files), saved with ``save_pretrained`` as safetensors, so ``text.encoder`` names its folder as it would name
``t5-base``. What it learns: the facts a caption states. Captions are drawn from ``data.captions`` (the train
phrasings only) over random ground truth, and five heads on the masked mean of its states classify the facts:

    caption bytes [B, L] --T5 encoder--> states [B, L, D] --masked mean--> [B, D] --linear heads--> family (16),
    key (12), mode (2), tempo word (4), mood (2)

The heads are dropped afterwards; the states are what the generator's text projection reads (frozen, as T5 is).
Held-out phrasings (``data.captions.HELD_OUT``) are never trained on; their accuracy is reported beside the train
phrasings' so a reader sees how far the encoder carries beyond its templates.

    python -m training.text_encoder --out models/demo/text_encoder --steps 1500
"""
from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from common.files import replace_folder
from data.captions import FAMILIES, MOOD_OF_TAG, TEMPO_WORDS, caption_from_truth, instrument_family, tempo_word
from data.synthetic.spec import KEY_NAMES

MODES = ("major", "minor")
TEMPOS = tuple(word for _, word in TEMPO_WORDS)
MOODS = ("bright", "dark")
MOOD_TAG = {word: tag for tag, word in MOOD_OF_TAG.items()}
FACTS = {"family": FAMILIES, "key": KEY_NAMES, "mode": MODES, "tempo": TEMPOS, "mood": MOODS}
METRICS_NAME = "text_encoder_metrics.json"


@dataclass
class TextEncoderSize:
    """The T5 config of the small encoder (``T5Config`` fields). 0.3 M parameters, 1.3 MB in fp32."""

    d_model: int = 128
    d_kv: int = 32
    d_ff: int = 256
    num_layers: int = 2
    num_heads: int = 4
    dropout_rate: float = 0.1

    def t5_config(self):
        from transformers import T5Config

        # 384: ByT5's vocabulary (3 specials + 256 bytes + 125 sentinels); the byte tokenizer never exceeds it
        return T5Config(vocab_size=384, pad_token_id=0, eos_token_id=1, **self.__dict__)


def random_truth(rng: random.Random, index: int) -> tuple[dict, dict[str, int]]:
    """A random ground-truth row (any of the 128 programs, tempo 60-170 BPM, mood independent of mode) and the
    class index of each fact it states."""
    row = {"id": f"text{index}", "program": rng.randrange(128), "key": rng.choice(KEY_NAMES), "mode": rng.choice(MODES),
           "tempo": rng.uniform(60.0, 170.0), "tags": [MOOD_TAG[rng.choice(MOODS)]]}
    words = {"family": instrument_family(row["program"]), "key": row["key"], "mode": row["mode"],
             "tempo": tempo_word(row["tempo"]), "mood": MOOD_OF_TAG[row["tags"][0]]}
    return row, {fact: FACTS[fact].index(word) for fact, word in words.items()}


def caption_batch(rng: random.Random, start: int, size: int, held_out: bool = False) -> tuple[list[str], dict]:
    """``size`` captions and their labels {fact: long [size]}."""
    captions, labels = [], {fact: [] for fact in FACTS}
    for i in range(start, start + size):
        row, classes = random_truth(rng, i)
        captions.append(caption_from_truth(row, seed=rng.randrange(1 << 30), held_out=held_out))
        for fact, value in classes.items():
            labels[fact].append(value)
    return captions, {fact: torch.tensor(values) for fact, values in labels.items()}


class FactClassifier(nn.Module):
    """The encoder and one linear head per fact on its masked mean state (the heads only train it)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        width = encoder.config.d_model
        self.heads = nn.ModuleDict({fact: nn.Linear(width, len(classes)) for fact, classes in FACTS.items()})

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """ids, mask [B, L] -> logits {fact: [B, classes]}."""
        states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, L, D]
        pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return {fact: head(pooled) for fact, head in self.heads.items()}


def accuracy(model: FactClassifier, tokenizer, captions: list[str], labels: dict) -> dict[str, float]:
    """Share of captions whose fact each head names right."""
    model.eval()
    with torch.no_grad():
        encoded = tokenizer(captions, padding=True, return_tensors="pt")
        logits = model(encoded["input_ids"], encoded["attention_mask"])
    model.train()
    return {fact: float((logits[fact].argmax(-1) == labels[fact]).float().mean()) for fact in FACTS}


def train_text_encoder(out: Path, steps: int = 1500, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                       size: TextEncoderSize | None = None, eval_size: int = 1000) -> dict:
    """Train the encoder, save it to ``out`` (``T5EncoderModel.save_pretrained``, safetensors) with its metrics;
    returns the metrics: accuracy per fact on fresh train-phrasing and held-out-phrasing captions."""
    from transformers import ByT5Tokenizer, T5EncoderModel

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokenizer = ByT5Tokenizer()
    model = FactClassifier(T5EncoderModel((size or TextEncoderSize()).t5_config()))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    loss_fn = nn.CrossEntropyLoss()
    progress = tqdm(range(steps), desc="text encoder", unit="step")
    for step in progress:
        captions, labels = caption_batch(rng, step * batch_size, batch_size)
        encoded = tokenizer(captions, padding=True, return_tensors="pt")
        logits = model(encoded["input_ids"], encoded["attention_mask"])
        loss = sum(loss_fn(logits[fact], labels[fact]) for fact in FACTS)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 50 == 0:
            progress.set_postfix(loss=f"{loss.item():.3f}")
    held_rng = random.Random(seed + 1)  # fresh captions, never seen in training
    parameters = sum(p.numel() for p in model.encoder.parameters())
    metrics = {"steps": steps, "batch_size": batch_size, "parameters": parameters,
               "train_phrasings": accuracy(model, tokenizer, *caption_batch(held_rng, 0, eval_size)),
               "held_out_phrasings": accuracy(model, tokenizer, *caption_batch(held_rng, 0, eval_size, held_out=True))}
    with replace_folder(out) as folder:
        model.encoder.save_pretrained(folder)  # safetensors
        (folder / METRICS_NAME).write_text(json.dumps(metrics, indent=2))
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the encoder to (replaced atomically)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    metrics = train_text_encoder(Path(args.out), args.steps, args.batch_size, args.lr, args.seed)
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
