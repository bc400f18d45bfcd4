"""VideoToMusic: the dual-stream model end to end — assembly, conditioning, teacher forcing, generation.

    video --extract_features--> VideoFeatures --fusion--> encoder states [B, L, Ddec] --decoder + LoRA--> codes
    codes [B, K, T] --codec.decode--> waveform [B, 1, S]

Only the fusion (with its projection) and the LoRA adapters train; CLIP, the codec and the decoder's base weights
are frozen and come from the Hub ids named in the config, so a checkpoint holds only the trained part
(``model/checkpoint.py``). The loss lives in ``training/loss.py``; ``forward`` returns logits and labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from peft import get_peft_model_state_dict, set_peft_model_state_dict
from torch import nn

from common.device import Placement, move_module, placement_for, seeded_generator
from model import checkpoint
from model.aligned import aligned_injection
from model.checkpoint import CheckpointError
from model.config import V2MConfig, load_config
from model.decoder import add_lora, load_musicgen, place_decoder
from model.delay import training_pair
from model.extract import extract_features
from model.features import FeatureBatch, VideoFeatures, collate_features
from model.fusion import TemporalFusion
from model.guidance import drop_condition, drop_streams, joint_memory, null_condition
from model.sampling import sample_codes, stepper_for
from model.semantic import build_semantic_encoder
from model.text import TextConditioner, TextPromptError, build_text_conditioner, prompt_list

DEFAULT_MODEL = "default"
DEMO_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "demo"  # the shipped toy model, when present
CPU_FP32 = "cpu", "fp32"  # the Python API's default placement (as transformers'): exact, everywhere

__all__ = ["CheckpointError", "DEFAULT_MODEL", "GenerationDefaults", "VideoToMusic", "default_model_is_trained"]


def default_model_is_trained() -> bool:
    """True once the trained demo model ships in ``models/demo``; until then the default is the untrained tiny one."""
    return (DEMO_MODEL_DIR / checkpoint.CONFIG_NAME).is_file()


@dataclass(frozen=True)
class GenerationDefaults:
    """Sampling settings a model was built with (from its config's ``guidance`` and ``generation`` sections)."""

    guidance_scale: float = 3.0
    top_k: int = 250
    temperature: float = 1.0
    max_seconds: float = 30.0  # the longest music one generation makes; longer videos go window by window
    text_guidance_scale: float = 3.0  # the text prompt's scale (models with a text encoder)

    @staticmethod
    def from_config(config: V2MConfig) -> "GenerationDefaults":
        generation = config.generation
        return GenerationDefaults(config.guidance.scale, generation.top_k, generation.temperature,
                                  generation.max_seconds, config.guidance.text_scale)


class VideoToMusic(nn.Module):
    """The dual-stream video-to-music model. Build with ``from_config`` or ``from_pretrained``.

    ``placement`` (``common.device``) says where the parts live and how they are stored; ``generation`` holds the
    sampling defaults. Both are given by the builder: nothing here reads the config at call time.
    ``text_conditioner`` (``model.text``; None unless ``text.enabled``) encodes optional text prompts.
    """

    def __init__(self, config: V2MConfig, semantic_encoder: nn.Module, fusion: TemporalFusion, decoder: nn.Module,
                 codec: nn.Module, placement: Placement | None = None, generation: GenerationDefaults | None = None,
                 text_conditioner: TextConditioner | None = None):
        super().__init__()
        self.text_conditioner = text_conditioner
        self.config = config
        self.semantic_encoder = semantic_encoder
        self.fusion = fusion
        self.decoder = decoder
        self.codec = codec
        self.placement = placement or placement_for(*CPU_FP32)
        self.generation = generation or GenerationDefaults.from_config(config)
        decoder_config = decoder.config
        self.num_codebooks = int(decoder_config.num_codebooks)
        self.start_token = int(decoder_config.vocab_size)  # BOS == pad == vocab_size, as in released MusicGen
        self._check_invariants()

    # ----------------------------------------------------------------------------------------------- building
    @classmethod
    def from_config(cls, config: V2MConfig | str, seed: int = 0, placement: Placement | None = None) -> "VideoToMusic":
        """Frozen parts from the config's Hub ids (or random init), fresh fusion and LoRA (seeded), on ``placement``
        (default: the CPU in fp32)."""
        config = load_config(config) if isinstance(config, str) else config
        placement = placement or placement_for(*CPU_FP32)
        with torch.random.fork_rng():
            torch.manual_seed(0)  # frozen random-init parts never depend on the training seed (feature caches)
            semantic_encoder = build_semantic_encoder(config.semantic)
            decoder, codec = load_musicgen(config.decoder, placement)
            torch.manual_seed(seed)  # fresh fusion and adapters: the same on every machine for a given seed
            fusion = TemporalFusion(semantic_encoder.dim, config.motion.feature_dim, decoder.config.hidden_size,
                                    **vars(config.fusion))
            decoder = add_lora(decoder, config.lora, quantized(decoder), config.decoder.gradient_checkpointing)
            text = None
            if config.text.enabled:  # last: a model without text draws exactly the random numbers it drew before
                torch.manual_seed(0)  # frozen random-init encoder; its fresh projection is seeded with it
                text = build_text_conditioner(config.text, config.decoder, decoder.config.hidden_size, placement)
        model = cls(config, semantic_encoder, fusion, decoder, codec, placement, GenerationDefaults.from_config(config),
                    text)
        return model.place(placement)

    def place(self, placement: Placement) -> "VideoToMusic":
        """Move every part to ``placement.device`` in its dtype (the codec and the trainable parts stay fp32)."""
        device = placement.device
        move_module(self.semantic_encoder, device, placement.semantic)
        move_module(self.fusion, device, torch.float32)
        move_module(self.codec, device, torch.float32)
        place_decoder(self.decoder, placement)
        if self.text_conditioner is not None:
            self.text_conditioner.place(placement)
        self.placement = placement
        self._kept_stepper = None
        return self

    def parts(self) -> dict[str, tuple[torch.device, torch.dtype]]:
        """(device, dtype) of each part's first floating-point tensor: what the device tests and the GPU check read."""
        def first(module: nn.Module) -> tuple[torch.device, torch.dtype]:
            tensor = next(t for t in [*module.parameters(), *module.buffers()] if t.is_floating_point())
            return tensor.device, tensor.dtype

        embeddings = self.decoder.get_input_embeddings()[0].weight
        parts = {"semantic": first(self.semantic_encoder), "fusion": first(self.fusion),
                 "decoder": (embeddings.device, self.decoder_dtype), "codec": first(self.codec)}
        if self.text_conditioner is not None:
            parts["text"] = first(self.text_conditioner.encoder)
        return parts

    def _check_invariants(self) -> None:
        """Cross-part checks that would otherwise fail deep inside a forward pass."""
        if self.codec.num_codebooks != self.num_codebooks:
            raise CheckpointError(f"codec has {self.codec.num_codebooks} codebooks but the decoder expects {self.num_codebooks}")
        if self.codec.codebook_size != self.start_token:
            raise CheckpointError(f"codec codebook size {self.codec.codebook_size} != decoder vocabulary {self.start_token}")
        if self.fusion.project.out_features != self.decoder.config.hidden_size:
            raise CheckpointError("fusion output width does not match the decoder hidden size")

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def frame_rate(self) -> int:
        return self.codec.frame_rate

    @property
    def device(self) -> torch.device:
        return self.fusion.project.weight.device

    @property
    def decoder_dtype(self) -> torch.dtype:
        """The dtype the decoder computes in (its embeddings' dtype; a quantized base computes in its compute dtype)."""
        return self.decoder.get_input_embeddings()[0].weight.dtype

    # ----------------------------------------------------------------------------------------------- features
    def extract_features(self, video_path: str | Path, start: float = 0.0,
                         max_seconds: float | None = None) -> VideoFeatures:
        """Decode the video once and run both frozen streams (raises ``media.video.VideoError`` on bad files)."""
        return extract_features(video_path, self.semantic_encoder, self.config.semantic, self.config.motion,
                                start=start, max_seconds=max_seconds)

    def collate(self, items: list[VideoFeatures]) -> FeatureBatch:
        """Pad clips into one batch, on the CPU (a ``DataLoader`` may pin it); ``condition`` moves it."""
        return collate_features(items, self.semantic_encoder.dim, self.config.motion.feature_dim)

    def full_condition(self, batch: FeatureBatch, num_steps: int) -> tuple[torch.Tensor, ...]:
        """Fused encoder states [B, L, Ddec] and mask [B, L] (decoder dtype, on the model's device), plus the
        time-aligned term [B, num_steps, Ddec] when the config enables it."""
        hidden, mask, aligned = self.fusion(batch.to(self.device), num_steps, self.frame_rate)
        hidden = hidden.to(self.decoder_dtype)
        return (hidden, mask) if aligned is None else (hidden, mask, aligned.to(self.decoder_dtype))

    def condition(self, batch: FeatureBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused encoder states [B, L, Ddec] (decoder dtype) and their mask [B, L]."""
        return self.full_condition(batch, 1)[:2]

    def text_condition(self, prompts: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected text states [B, Lt, Ddec] (decoder dtype) and mask [B, Lt]; an empty prompt is the null text."""
        if self.text_conditioner is None:
            raise TextPromptError("this model has no text encoder (its config has text.enabled false): generate "
                                  "without a prompt, or use a model trained with text")
        states, mask = self.text_conditioner(prompts)
        return states.to(self.decoder_dtype), mask

    # ----------------------------------------------------------------------------------------------- training
    def forward(self, batch: FeatureBatch, codes: torch.Tensor, code_lengths: torch.Tensor | None = None,
                condition_dropout: float = 0.0, captions: list[str | None] | None = None,
                text_dropout: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """One teacher-forced decoder pass: logits [B, K, S, V] and labels [B, K, S] (delayed layout) for codes
        [B, K, T]; the condition is dropped with probability ``condition_dropout`` (training, for guidance).

        With a text encoder and ``captions`` (one per clip, None or "" for none), the memory is [video ; text] and
        the text is dropped with probability ``text_dropout``, independently of the video (``drop_streams``).

        The loss is ``training.loss.codebook_cross_entropy(*model(...))``; under DDP call the wrapped model.
        """
        inputs, labels = training_pair(codes.to(self.device), self.start_token, self.start_token,
                                       None if code_lengths is None else code_lengths.to(self.device))
        batch_size, num_codebooks, steps = inputs.shape
        condition = self.full_condition(batch, steps)
        if captions is not None and self.text_conditioner is not None:
            condition, text = drop_streams(condition, self.text_condition(captions), condition_dropout, text_dropout)
            condition = (*joint_memory(*condition[:2], *text), *condition[2:])
        elif condition_dropout > 0:
            condition = drop_condition(*condition, p=condition_dropout)
        hidden, mask, aligned = (*condition, None)[:3]
        with aligned_injection(self.decoder, aligned):
            out = self.decoder(input_ids=inputs.reshape(batch_size * num_codebooks, steps),
                               encoder_hidden_states=hidden, encoder_attention_mask=mask)
        return out.logits.reshape(batch_size, num_codebooks, steps, -1), labels

    teacher_forced = forward  # the name validation and the tools use

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds: fusion (incl. projection), the LoRA adapters and, with a text encoder, the text
        projection, fp32 on the CPU."""
        state = {f"fusion.{k}": v for k, v in self.fusion.state_dict().items()}
        state.update({f"lora.{k}": v for k, v in get_peft_model_state_dict(self.decoder).items()})
        if self.text_conditioner is not None:
            state.update({f"text.{k}": v for k, v in self.text_conditioner.projection.state_dict().items()})
        return {k: v.detach().float().cpu().contiguous() for k, v in state.items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor], source: str = "checkpoint",
                             keep_fresh_text: bool = False) -> None:
        """Load fusion + LoRA weights, refusing any missing, unexpected or mis-shaped tensor.

        ``keep_fresh_text``: a warm start from a video-only model (``train.init_from``) into one with a text encoder:
        the source has no text projection, so the fresh one stays; everything else must still match exactly.
        """
        expected = self.trainable_state_dict()
        fresh_text = keep_fresh_text and not any(k.startswith("text.") for k in state)
        if fresh_text:
            expected = {k: v for k, v in expected.items() if not k.startswith("text.")}
        checkpoint.check_state(state, expected, source)
        self.fusion.load_state_dict({k[len("fusion."):]: v for k, v in state.items() if k.startswith("fusion.")})
        if self.text_conditioner is not None and not fresh_text:
            self.text_conditioner.projection.load_state_dict(
                {k[len("text."):]: v for k, v in state.items() if k.startswith("text.")})
        lora = {k[len("lora."):]: v for k, v in state.items() if k.startswith("lora.")}
        result = set_peft_model_state_dict(self.decoder, lora)
        unexpected = list(getattr(result, "unexpected_keys", None) or [])
        if unexpected:
            raise CheckpointError(f"{source}: LoRA weights the decoder has no place for ({unexpected[:3]})")

    # ----------------------------------------------------------------------------------------------- generation
    @torch.no_grad()
    def generate_codes(self, features: list[VideoFeatures], seconds: float, seed: int = 0,
                       guidance_scale: float | None = None, unconditional: bool = False, greedy: bool = False,
                       progress: bool = False, precision: str | None = None,
                       prompt: torch.Tensor | None = None, text: str | list[str] | None = None,
                       text_guidance_scale: float | None = None) -> torch.Tensor:
        """Codes [B, K, T] for ``seconds`` of music per clip (T = seconds x frame rate), on the model's device.

        ``prompt`` codes [B, K, P] (P < T): music to continue; the output's first P frames are the prompt, and the
        features' times (so the time-aligned term) count from the prompt's start.

        ``text``: a text prompt (one string for every clip, or one per clip) for a model with a text encoder; the
        null, video and video+text branches then run as one batch (``model.guidance.with_text_branches``) mixed
        with ``guidance_scale`` and ``text_guidance_scale``. None: video only, exactly as a model without text.

        ``precision`` ("float32", "bfloat16" or "int8"; default: the placement's) is the storage of the decoder
        layers' weights on the fast sampling path (``model.fast_decoder``).
        """
        defaults = self.generation
        scale = defaults.guidance_scale if guidance_scale is None else guidance_scale
        num_frames = max(1, round(seconds * self.frame_rate))
        if num_frames > round(defaults.max_seconds * self.frame_rate):
            raise ValueError(f"{seconds:g} s is longer than this model generates at once (generation.max_seconds "
                             f"{defaults.max_seconds:g}); use model.long_form.generate_long for long music")
        condition = self.full_condition(self.collate(features), num_frames + self.num_codebooks - 1)
        if unconditional:
            condition, scale = null_condition(*condition), 1.0
        hidden, mask, aligned = (*condition, None)[:3]
        prompts = prompt_list(text, len(features))
        text_memory = None if prompts is None or unconditional else self.text_condition(prompts)
        text_scale = defaults.text_guidance_scale if text_guidance_scale is None else text_guidance_scale
        generator = seeded_generator(self.device, seed)
        return sample_codes(self.decoder_stepper(precision or self.placement.sampling), hidden, mask, num_frames,
                            self.num_codebooks, self.start_token, scale, defaults.top_k, defaults.temperature,
                            generator, greedy, progress, aligned, None if prompt is None else prompt.to(self.device),
                            text=text_memory, text_scale=text_scale)

    def decoder_stepper(self, precision: str = "float32"):
        """What ``sample_codes`` steps: see ``model.sampling.stepper_for``.

        Rounded copies (bfloat16, int8) take seconds to make, so the last one is kept until a decoder weight
        changes (an optimizer step or a load bumps the tensors' version counters).
        """
        if precision == "float32":
            return stepper_for(self.decoder)  # reads the live weights: nothing to keep
        key = (precision, tuple((id(p), p._version) for p in self.decoder.parameters()))
        kept = getattr(self, "_kept_stepper", None)
        if kept is None or kept[0] != key:
            kept = (key, stepper_for(self.decoder, precision))
            self._kept_stepper = kept
        return kept[1]

    @torch.no_grad()
    def generate(self, features: list[VideoFeatures], seconds: float, seed: int = 0,
                 guidance_scale: float | None = None, unconditional: bool = False, progress: bool = False,
                 precision: str | None = None, prompt: str | list[str] | None = None,
                 text_guidance_scale: float | None = None) -> torch.Tensor:
        """Music for each clip: float32 [B, samples] at ``sample_rate`` on the CPU, exactly ``seconds`` long.

        ``prompt``: an optional text prompt ("calm piano, slow"; one string, or one per clip) for a model with a
        text encoder (``TextPromptError`` otherwise); None gives the video-only music, unchanged.
        """
        was_training = self.training
        self.eval()
        codes = self.generate_codes(features, seconds, seed, guidance_scale, unconditional, progress=progress,
                                    precision=precision, text=prompt, text_guidance_scale=text_guidance_scale)
        wav = self.codec.decode(codes)[:, 0].float().cpu()  # [B, S]
        self.train(was_training)
        return _fit_length(wav, round(seconds * self.sample_rate))

    # ----------------------------------------------------------------------------------------------- saving
    def save_pretrained(self, directory: str | Path) -> None:
        """Write the model folder (``model/checkpoint.py``), built beside ``directory`` and swapped in whole."""
        checkpoint.save_model(self, directory)

    def push_to_hub(self, repo_id: str, private: bool = False, token: str | None = None,
                    commit_message: str = "Upload video-to-music model") -> str:
        """``save_pretrained`` into a temporary folder and upload it to the Hub; returns the repo URL."""
        return checkpoint.push_model(self, repo_id, private, token, commit_message)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = DEFAULT_MODEL, *, device: "str | Placement" = "cpu",
                        precision: str = "fp32",
                        revision: str | None = None, token: str | None = None, cache_dir: str | None = None,
                        local_files_only: bool | None = None, force_download: bool | None = None,
                        **config_overrides) -> "VideoToMusic":
        """Load a folder written by ``save_pretrained``, a Hub repo id, or ``"default"`` (the project's default model),
        on ``device`` in ``precision`` (``common.device``; the commands default to ``auto``).

        ``config_overrides`` replace sections of the stored config that do not change trained shapes (e.g.
        ``decoder={"quantization": "4bit"}``).
        """
        placement = device if isinstance(device, Placement) else placement_for(device, precision)
        if str(name_or_path) == DEFAULT_MODEL:
            if not default_model_is_trained():
                return cls.from_config(load_config("tiny"), seed=0, placement=placement)
            name_or_path = DEMO_MODEL_DIR
        folder = checkpoint.resolve_folder(str(name_or_path), revision=revision, token=token, cache_dir=cache_dir,
                                           local_files_only=local_files_only, force_download=force_download)
        config = checkpoint.read_config(folder, config_overrides)
        model = cls.from_config(config, placement=placement)
        model.load_trainable_state(checkpoint.read_trainable(folder / checkpoint.WEIGHTS_NAME),
                                   source=str(folder / checkpoint.WEIGHTS_NAME))
        return model


def quantized(decoder: nn.Module) -> bool:
    """True for a bitsandbytes 4/8-bit base."""
    return bool(getattr(decoder, "is_loaded_in_4bit", False) or getattr(decoder, "is_loaded_in_8bit", False))


def _fit_length(wav: torch.Tensor, samples: int) -> torch.Tensor:
    """[B, S] -> [B, samples]: trim, or pad with silence (the codec rounds up to whole frames)."""
    if wav.shape[-1] >= samples:
        return wav[..., :samples]
    return nn.functional.pad(wav, (0, samples - wav.shape[-1]))
