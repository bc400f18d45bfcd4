"""VideoToMusic: the dual-stream model end to end, and how it is saved, shared and loaded.

    video --extract_features--> VideoFeatures --fusion--> encoder states [B, L, Ddec] --decoder + LoRA--> codes
    codes [B, K, T] --codec.decode--> waveform [B, 1, S]

Only the fusion (with its projection) and the LoRA adapters train; CLIP, the codec and the decoder's base weights
are frozen and come from the Hub ids named in the config, so a checkpoint holds only the trained part.
"""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import torch
from peft import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from torch import nn

from model.config import V2MConfig, config_from_dict, load_config
from model.decoder import add_lora, load_musicgen
from model.delay import IGNORE_INDEX, training_pair
from model.extract import extract_features
from model.features import FeatureBatch, VideoFeatures, collate_features
from model.fusion import TemporalFusion
from model.aligned import aligned_injection
from model.guidance import drop_condition, null_condition
from model.sampling import sample_codes, stepper_for
from model.semantic import build_semantic_encoder

CHECKPOINT_FORMAT = "video-to-music-lora"
CHECKPOINT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
SEMANTIC_NAME = "semantic.safetensors"
CODEC_NAME = "codec.safetensors"
BASE_DECODER_DIR = "decoder"
DEFAULT_MODEL = "default"
DEMO_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "demo"  # the shipped toy model, when present


def default_model_is_trained() -> bool:
    """True once the trained demo model ships in ``models/demo``; until then the default is the untrained tiny one."""
    return (DEMO_MODEL_DIR / CONFIG_NAME).is_file()


class CheckpointError(ValueError):
    """A model folder or Hub repo that cannot be loaded; the message is one line meant for the user."""


def codebook_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over codebooks of the cross-entropy (MusicGen's objective).

    logits [B, K, S, V], labels [B, K, S] (``IGNORE_INDEX`` not scored), weights [B, K, S] optional per-step
    weights (the beat-weighted loss of DESIGN.md §3 plugs in here).
    """
    per_token = nn.functional.cross_entropy(logits.permute(0, 3, 1, 2).float(), labels.clamp_min(0),
                                            reduction="none")  # [B, K, S]
    scored = (labels != IGNORE_INDEX).float()
    if weights is not None:
        scored = scored * weights
    per_codebook = (per_token * scored).sum(dim=(0, 2)) / scored.sum(dim=(0, 2)).clamp_min(1e-8)  # [K]
    return per_codebook.mean()


class VideoToMusic(nn.Module):
    """The dual-stream video-to-music model. Build with ``from_config`` or ``from_pretrained``."""

    def __init__(self, config: V2MConfig, semantic_encoder: nn.Module, fusion: TemporalFusion, decoder: nn.Module,
                 codec: nn.Module):
        super().__init__()
        self.config = config
        self.semantic_encoder = semantic_encoder
        self.fusion = fusion
        self.decoder = decoder
        self.codec = codec
        decoder_config = decoder.config
        self.num_codebooks = int(decoder_config.num_codebooks)
        self.start_token = int(decoder_config.vocab_size)  # BOS == pad == vocab_size, as in released MusicGen
        self._check_invariants()

    # ----------------------------------------------------------------------------------------------- building
    @classmethod
    def from_config(cls, config: V2MConfig | str, seed: int = 0) -> "VideoToMusic":
        """Frozen parts from the config's Hub ids (or random init), fresh fusion and LoRA (seeded)."""
        config = load_config(config) if isinstance(config, str) else config
        with torch.random.fork_rng():
            torch.manual_seed(0)  # frozen random-init parts never depend on the training seed (feature caches)
            semantic_encoder = build_semantic_encoder(config.semantic)
            decoder, codec = load_musicgen(config.decoder)
            torch.manual_seed(seed)  # fresh fusion and adapters: the same on every machine for a given seed
            fusion = TemporalFusion(semantic_encoder.dim, config.motion.feature_dim, decoder.config.hidden_size,
                                    **vars(config.fusion))
            decoder = add_lora(decoder, config.lora, config.decoder.quantization != "none",
                               config.decoder.gradient_checkpointing)
        return cls(config, semantic_encoder, fusion, decoder, codec)

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

    # ----------------------------------------------------------------------------------------------- features
    def extract_features(self, video_path: str | Path, start: float = 0.0,
                         max_seconds: float | None = None) -> VideoFeatures:
        """Decode the video once and run both frozen streams (raises ``data.video.VideoError`` on bad files)."""
        return extract_features(video_path, self.semantic_encoder, self.config.semantic, self.config.motion,
                                start=start, max_seconds=max_seconds)

    def collate(self, items: list[VideoFeatures]) -> FeatureBatch:
        return collate_features(items, self.semantic_encoder.dim, self.config.motion.feature_dim)

    def condition(self, batch: FeatureBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused encoder states [B, L, Ddec] (decoder dtype) and their mask [B, L]."""
        hidden, mask, _ = self.fusion(batch.to(self.device))
        return hidden.to(self.decoder_dtype), mask

    def full_condition(self, batch: FeatureBatch, num_steps: int) -> tuple[torch.Tensor, ...]:
        """``condition`` plus, when the config enables it, the time-aligned term [B, num_steps, Ddec]."""
        hidden, mask, aligned = self.fusion(batch.to(self.device), num_steps, self.frame_rate)
        hidden = hidden.to(self.decoder_dtype)
        return (hidden, mask) if aligned is None else (hidden, mask, aligned.to(self.decoder_dtype))

    @property
    def device(self) -> torch.device:
        return self.fusion.project.weight.device

    @property
    def decoder_dtype(self) -> torch.dtype:
        return self.decoder.get_input_embeddings()[0].weight.dtype

    # ----------------------------------------------------------------------------------------------- training
    def forward(self, batch: FeatureBatch, codes: torch.Tensor, code_lengths: torch.Tensor | None = None,
                step_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Training loss for codes [B, K, T] given the video features; drops the condition for guidance."""
        logits, labels = self.teacher_forced(batch, codes, code_lengths)
        return codebook_cross_entropy(logits, labels, step_weights)

    def teacher_forced(self, batch: FeatureBatch, codes: torch.Tensor,
                       code_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, K, S, V] and labels [B, K, S] (delayed layout) of one teacher-forced decoder pass."""
        inputs, labels = training_pair(codes.to(self.device), self.start_token, self.start_token, code_lengths)
        batch_size, num_codebooks, steps = inputs.shape
        condition = self.full_condition(batch, steps)
        if self.training:
            condition = drop_condition(*condition, p=self.config.guidance.condition_dropout)
        hidden, mask, aligned = (*condition, None)[:3]
        with aligned_injection(self.decoder, aligned):
            out = self.decoder(input_ids=inputs.reshape(batch_size * num_codebooks, steps),
                               encoder_hidden_states=hidden, encoder_attention_mask=mask)
        return out.logits.reshape(batch_size, num_codebooks, steps, -1), labels

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds: fusion (incl. projection) and the LoRA adapters."""
        state = {f"fusion.{k}": v for k, v in self.fusion.state_dict().items()}
        state.update({f"lora.{k}": v for k, v in get_peft_model_state_dict(self.decoder).items()})
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    # ----------------------------------------------------------------------------------------------- generation
    @torch.no_grad()
    def generate_codes(self, features: list[VideoFeatures], seconds: float, seed: int = 0,
                       guidance_scale: float | None = None, unconditional: bool = False, greedy: bool = False,
                       progress: bool = False, precision: str = "float32",
                       prompt: torch.Tensor | None = None) -> torch.Tensor:
        """Codes [B, K, T] for ``seconds`` of music per clip (T = seconds x frame rate).

        ``prompt`` codes [B, K, P] (P < T): music to continue; the output's first P frames are the prompt, and the
        features' times (so the time-aligned term) count from the prompt's start.

        ``precision`` ("float32", or opt-in "bfloat16" / "int8": faster on a CPU, approximate — see
        ``model.fast_decoder``) is the storage of the decoder layers' weights while sampling.
        """
        scale = self.config.guidance.scale if guidance_scale is None else guidance_scale
        num_frames = max(1, round(seconds * self.frame_rate))
        condition = self.full_condition(self.collate(features), num_frames + self.num_codebooks - 1)
        if unconditional:
            condition, scale = null_condition(*condition), 1.0
        hidden, mask, aligned = (*condition, None)[:3]
        generator = torch.Generator(device=self.device).manual_seed(seed)
        gen = self.config.generation
        return sample_codes(self.decoder_stepper(precision), hidden, mask, num_frames, self.num_codebooks,
                            self.start_token, scale, gen.top_k, gen.temperature, generator, greedy, progress,
                            aligned, prompt)

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
                 precision: str = "float32") -> torch.Tensor:
        """Music for each clip: float32 [B, samples] at ``sample_rate``, exactly ``seconds`` long."""
        was_training = self.training
        self.eval()
        codes = self.generate_codes(features, seconds, seed, guidance_scale, unconditional, progress=progress,
                                    precision=precision)
        wav = self.codec.decode(codes)[:, 0]  # [B, S]
        self.train(was_training)
        return _fit_length(wav, round(seconds * self.sample_rate))

    # ----------------------------------------------------------------------------------------------- saving
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` + ``model.safetensors`` (trained weights) + a model card, each file atomically.

        Frozen parts that no Hub id can supply (a decoder pretrained here, a fitted codec, a random-init image
        tower) are stored beside them, and the saved config points at them relative to the folder.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self._bundle_local_parts(directory)
        meta = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "config": config}
        _atomic_write_text(directory / CONFIG_NAME, json.dumps(meta, indent=2))
        tmp = directory / (WEIGHTS_NAME + ".tmp")
        save_file(self.trainable_state_dict(), str(tmp), metadata={"format": CHECKPOINT_FORMAT})
        tmp.replace(directory / WEIGHTS_NAME)
        if not (directory / "README.md").exists():
            _atomic_write_text(directory / "README.md", _model_card(self.config))

    def _bundle_local_parts(self, directory: Path) -> dict:
        config = self.config.to_dict()
        semantic, decoder = config["semantic"], config["decoder"]
        if semantic["random_init"] is not None or semantic["weights"] is not None:
            save_file({k: v.contiguous() for k, v in self.semantic_encoder.visual.state_dict().items()},
                      str(directory / SEMANTIC_NAME))
            semantic["weights"] = SEMANTIC_NAME
        if decoder["codec"] is not None:  # spectral codec + a decoder that is not on the Hub
            self.codec.save(directory / CODEC_NAME)
            decoder["codec"]["weights"] = CODEC_NAME
            save_base_decoder(self.decoder, directory / BASE_DECODER_DIR)
            decoder["base"], decoder["random_init"] = BASE_DECODER_DIR, None
        return config

    def push_to_hub(self, repo_id: str, private: bool = False, commit_message: str = "Upload video-to-music model") -> str:
        """``save_pretrained`` into a temporary folder and upload it to the Hub; returns the repo URL."""
        from huggingface_hub import HfApi

        api = HfApi()
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
        return str(url)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = DEFAULT_MODEL, **config_overrides) -> "VideoToMusic":
        """Load a folder written by ``save_pretrained``, a Hub repo id, or ``"default"`` (the project's default model).

        ``config_overrides`` replace sections of the stored config that do not change trained shapes (e.g.
        ``decoder={"quantization": "4bit"}``).
        """
        if str(name_or_path) == DEFAULT_MODEL:
            if not default_model_is_trained():
                return cls.from_config(load_config("tiny"), seed=0)
            name_or_path = DEMO_MODEL_DIR
        folder = _resolve_folder(str(name_or_path))
        config = _read_config(folder, config_overrides)
        model = cls.from_config(config)
        model._load_trainable(folder / WEIGHTS_NAME)
        return model

    def _load_trainable(self, path: Path) -> None:
        if not path.is_file():
            raise CheckpointError(f"{path.parent}: no {WEIGHTS_NAME}")
        try:
            state = load_file(str(path))
        except Exception as error:  # safetensors raises several types for corrupt files
            raise CheckpointError(f"{path}: not a readable safetensors file ({str(error)[:120]})") from None
        self.load_trainable_state(state, source=str(path))

    def load_trainable_state(self, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Load fusion + LoRA weights, refusing any missing, unexpected or mis-shaped tensor."""
        expected = self.trainable_state_dict()
        if set(state) != set(expected):
            missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
            raise CheckpointError(f"{source}: weights do not match the config (missing {missing[:3]}, unexpected {extra[:3]})")
        for key, value in state.items():
            if value.shape != expected[key].shape:
                raise CheckpointError(f"{source}: {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")
        self.fusion.load_state_dict({k[len("fusion."):]: v for k, v in state.items() if k.startswith("fusion.")})
        lora = {k[len("lora."):]: v for k, v in state.items() if k.startswith("lora.")}
        set_peft_model_state_dict(self.decoder, lora)


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _resolve_folder(name: str) -> Path:
    """A local folder as it is; otherwise a Hub repo id, downloading only the config, weights and card."""
    path = Path(name)
    if path.is_dir():
        return path
    if path.exists() or not HUB_ID.match(name):
        raise CheckpointError(f"{name}: not a model folder or a Hub repo id (org/name)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, "README.md", SEMANTIC_NAME,
                                                            CODEC_NAME, f"{BASE_DECODER_DIR}/*"]))
    except Exception as error:
        raise CheckpointError(f"{name}: could not fetch from the Hub ({type(error).__name__}: {str(error).splitlines()[0][:150]})") from None


def _read_config(folder: Path, overrides: dict) -> V2MConfig:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {CONFIG_NAME} (not written by save_pretrained)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    if meta.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: format version {meta.get('format_version')} (this code reads {CHECKPOINT_VERSION})")
    data = meta.get("config") or {}
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    try:
        config = config_from_dict(data)
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from None
    base = config.decoder.base  # a Hub id, or a folder inside the checkpoint (a decoder pretrained here)
    if Path(base).is_absolute() or (folder / base).exists() or not HUB_ID.match(base):
        config.decoder.base = _inside(folder, base, "base model")
    if config.decoder.codec is not None:
        config.decoder.codec["weights"] = _inside(folder, str(config.decoder.codec.get("weights", "")), "codec")
    if config.semantic.weights is not None:
        config.semantic.weights = _inside(folder, config.semantic.weights, "image encoder")
    return config


def _inside(folder: Path, relative: str, what: str) -> str:
    """A path named by a stored config, resolved inside the checkpoint folder — never outside it."""
    resolved = (folder / relative).resolve()
    if not relative or Path(relative).is_absolute() or not resolved.is_relative_to(folder.resolve()):
        raise CheckpointError(f"{folder}: config names {what} {relative!r} outside the model folder; refused")
    if not resolved.exists():
        raise CheckpointError(f"{folder}: config names {what} {relative!r}, which the folder does not have")
    return str(resolved)


def save_base_decoder(decoder: nn.Module, directory: Path) -> None:
    """The frozen base of a peft-wrapped decoder as a plain ``MusicgenForCausalLM`` folder (LoRA left out)."""
    base = decoder.get_base_model() if hasattr(decoder, "get_base_model") else decoder
    state = {k.replace(".base_layer", ""): v.detach().contiguous() for k, v in base.state_dict().items()
             if "lora_" not in k}
    directory.mkdir(parents=True, exist_ok=True)
    base.config.save_pretrained(directory)
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})


def _fit_length(wav: torch.Tensor, samples: int) -> torch.Tensor:
    """[B, S] -> [B, samples]: trim, or pad with silence (the codec rounds up to whole frames)."""
    if wav.shape[-1] >= samples:
        return wav[..., :samples]
    return nn.functional.pad(wav, (0, samples - wav.shape[-1]))


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _model_card(config: V2MConfig) -> str:
    return (
        "---\nlibrary_name: peft\ntags: [video-to-music, musicgen, lora]\n---\n"
        f"# Video-to-music LoRA + fusion\n\nBase decoder: `{config.decoder.base}` "
        f"({config.decoder.quantization}); image encoder: open_clip `{config.semantic.model_name}` "
        f"(`{config.semantic.pretrained}`).\n\nOnly the trained weights (temporal fusion, projection, LoRA) are "
        "stored here; the base models are loaded from their own repos. Load with "
        "`VideoToMusic.from_pretrained(...)` from this project.\n"
    )
