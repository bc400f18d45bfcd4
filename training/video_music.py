"""The task ``train.py`` runs through ``training.loop``: fusion + LoRA on cached clip features.

Loss: MusicGen's cross-entropy over the codebooks (``training/loss.py``), beat-weighted when ``train.beat_alpha``
is set, with the video condition dropped to the null condition with probability ``guidance.condition_dropout``
(and, for a model with a text encoder, the clips' captions as text prompts, dropped independently with probability
``text.dropout``).

With ``train.sync_contrastive_weight`` > 0, the contrastive sync term of ``training/sync_contrastive.py`` is added
(the time-aligned condition must pick its crop's own music over the same music half a beat off); its probe lives
on the model as ``sync_probe`` while training, so the optimizer and the training checkpoints carry it, and is not
part of the saved model.

Validation (sharded over processes, reduced): the loss, and the sync probe where clips carry event times (the
synthetic set): codebook-0 cross-entropy at code frames within one frame of a known cut/impact vs at the other
frames. Hits are louder and rarer, so early on event frames cost more; once the model predicts hits from the video,
``sync_event_loss`` falls towards (or below) ``sync_other_loss``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from common.errors import UserError
from model.config import V2MConfig
from model.delay import IGNORE_INDEX
from training.batches import ClipSource, StepBatches, ValidationBatches, loader
from training.loss import codebook_cross_entropy


def cached_columns_for(model, config: V2MConfig, dataset_dir: Path, log=print) -> dict:
    """The feature columns of ``config`` in the dataset, computing any that are missing first with
    ``data.features.add_features`` (the one place the frozen encoders run), reusing ``model``'s encoders."""
    from data.features import add_features, cached_columns
    from training.batches import load_split

    columns = cached_columns(load_split(dataset_dir, "train"), config)
    if columns is None:
        log(f"{dataset_dir}: no cached features for this config: computing them first (python -m data.features)")
        columns = add_features(dataset_dir, config, model=model)["columns"]
    return columns


class VideoMusicTask:
    """Train the fusion and LoRA adapters of a ``VideoToMusic``."""

    final_name = "final"

    def __init__(self, model, config: V2MConfig, dataset_dir: Path, columns: dict):
        train = config.train
        self.model, self.config, self.train = model, config, train
        rates = model.frame_rate, model.sample_rate
        self.sync_weight = train.sync_contrastive_weight
        self.source = ClipSource(dataset_dir, "train", columns, *rates, train.beat_alpha, train.beat_delta,
                                 train.lead_in_seconds, music_frames=self.sync_weight > 0)
        self.validation = ClipSource(dataset_dir, "validation", columns, *rates)
        if len(self.source) == 0:
            raise UserError(f"{dataset_dir}: the train split is empty")
        self.sync_head = None
        if self.sync_weight > 0:
            from training.sync_contrastive import load_frozen_head

            try:
                self.sync_head = load_frozen_head(train.sync_head, model.device)
            except (OSError, ValueError) as error:
                raise UserError(f"train.sync_head {train.sync_head}: {str(error).splitlines()[0]}") from None
            # a training-only module on the model: the optimizer (which takes the model's trainable parameters)
            # and accelerate see it; trainable_state_dict and save_pretrained do not
            hidden = model.decoder.config.hidden_size
            model.sync_probe = torch.nn.Linear(hidden, self.sync_head.config.dim).to(model.device)

    def batches(self, first: int, last: int, rank: int, world: int):
        train = self.train
        steps = StepBatches(self.source, train.batch_size, train.clip_seconds, self.model.collate, train.seed,
                            first, last, rank, world)
        return loader(steps, train.num_workers, self._pin())

    def _pin(self) -> bool:
        return self.train.pin_memory and self.model.device.type == "cuda"

    def loss(self, model, batch) -> torch.Tensor:
        loss = clip_loss(model, batch, self.config.guidance.condition_dropout, self.model.num_codebooks,
                         self.config.text.dropout)
        if self.sync_head is None:
            return loss
        from training.sync_contrastive import sync_contrastive_loss

        aligned = self.model.full_condition(batch.features, batch.codes.shape[-1])[2]  # [B, T, H]
        term, _ = sync_contrastive_loss(self.model.sync_probe, self.sync_head, aligned, self.model.frame_rate,
                                        batch.music, batch.music_shifted)
        return loss + self.sync_weight * term

    @torch.no_grad()
    def validate(self, model, accelerator) -> dict:
        if len(self.validation) == 0:
            return {"val_loss": None}
        self.model.eval()
        batches = ValidationBatches(self.validation, self.train.batch_size, self.train.clip_seconds,
                                    self.model.collate, accelerator.process_index, accelerator.num_processes)
        totals = torch.zeros(6, device=accelerator.device)
        for batch in loader(batches, self.train.num_workers, self._pin()):
            totals += validation_sums(self.model, batch.to(accelerator.device))
        totals = accelerator.reduce(totals, "sum")
        self.model.train()
        return summarise_validation(totals)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The model's trainable weights, and the sync probe's (``sync_probe.*``) when the term is on."""
        state = self.model.trainable_state_dict()
        if self.sync_head is not None:
            from training.sync_contrastive import PROBE_PREFIX

            state.update({f"{PROBE_PREFIX}{k}": v.detach().float().cpu().contiguous()
                          for k, v in self.model.sync_probe.state_dict().items()})
        return state

    def load_trainable_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        from training.sync_contrastive import PROBE_PREFIX

        probe = {k[len(PROBE_PREFIX):]: v for k, v in state.items() if k.startswith(PROBE_PREFIX)}
        if self.sync_head is not None:
            if not probe:
                raise UserError(f"{source} has no sync probe weights: it was trained without "
                                "train.sync_contrastive_weight; resume with the settings it was trained with")
            self.model.sync_probe.load_state_dict(probe)
        elif probe:
            raise UserError(f"{source} was trained with train.sync_contrastive_weight; resume with the same settings")
        self.model.load_trainable_state({k: v for k, v in state.items() if not k.startswith(PROBE_PREFIX)},
                                        source=source)

    def save_final(self, folder: Path) -> None:
        self.model.save_pretrained(folder)


def clip_loss(model, batch, condition_dropout: float, num_codebooks: int | None = None,
              text_dropout: float = 0.0) -> torch.Tensor:
    """The training loss of one batch on the device: condition dropout, then the (beat-weighted) cross-entropy.

    ``model`` may be the DDP-wrapped module (its forward keeps gradients in sync), so ``num_codebooks`` is
    passed in when it cannot be read from it."""
    text = {} if batch.captions is None else {"captions": list(batch.captions), "text_dropout": text_dropout}
    logits, labels = model(batch.features, batch.codes, batch.lengths, condition_dropout=condition_dropout, **text)
    num_codebooks = num_codebooks or model.num_codebooks
    return codebook_cross_entropy(logits, labels, batch.step_weights(num_codebooks))


def validation_sums(model, batch) -> torch.Tensor:
    """[6] float on the device: batch loss, 1 (a batch), then the sum and count of codebook-0 losses at event frames
    and at the other frames. Tensors, so processes can add theirs up before anything is read back."""
    logits, labels = model.teacher_forced(batch.features, batch.codes, batch.lengths)
    loss = codebook_cross_entropy(logits, labels)
    frames = batch.codes.shape[-1]  # codebook 0's label at delayed step t is frame t
    first = torch.nn.functional.cross_entropy(logits[:, 0, :frames].transpose(1, 2).float(),
                                              labels[:, 0, :frames].clamp_min(0), reduction="none")  # [B, T]
    real = labels[:, 0, :frames] != IGNORE_INDEX
    event, other = real & batch.near_event, real & ~batch.near_event
    return torch.stack([loss.float(), torch.ones_like(loss, dtype=torch.float32), (first * event).sum(),
                        event.sum().float(), (first * other).sum(), other.sum().float()])


def summarise_validation(totals: torch.Tensor) -> dict:
    """The ``validation_sums`` of every batch and process, added up -> the logged figures."""
    loss, batches, event, events, other, others = totals.tolist()
    return {"val_loss": loss / batches if batches else None,
            "sync_event_loss": event / events if events else None,
            "sync_other_loss": other / others if others else None}
