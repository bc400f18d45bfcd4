"""Typed configuration for every part of the system, loaded from YAML presets.

Why dataclasses: a preset is read once, validated once (unknown keys, wrong types and impossible values raise
with the offending value), and then only *builders* read it; modules take plain arguments (see STYLE.md).

A preset YAML has one section per dataclass below::

    semantic: {model_name: ViT-B-32, pretrained: openai, clip_fps: 2.0, ...}
    motion:   {flow_fps: 10.0, algorithm: dis, ...}
    fusion:   {d_fuse: 256, ...}
    decoder:  {base: facebook/musicgen-small, quantization: none, ...}
    lora:     {r: 16, alpha: 32, ...}
    guidance: {condition_dropout: 0.2, scale: 3.0, text_scale: 3.0}
    text:     {enabled: false, encoder: facebook/musicgen-small, max_tokens: 64, dropout: 0.3, ...}
    generation: {top_k: 250, temperature: 1.0, max_seconds: 30.0}
    train:    {lr: 1e-4, ...}

Overrides from the command line use dotted keys: ``train.lr=3e-4 lora.r=8``.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from common.errors import UserError

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(UserError):
    """A config or override that cannot be used; the message names the key and the value."""


@dataclass
class SemanticConfig:
    """Semantic stream: a frozen open_clip image encoder applied to frames sampled at ``clip_fps``.

    ``random_init`` (a dict of open_clip model-config fields) builds a randomly initialised CLIP of the same classes
    instead of loading ``pretrained`` weights: used by the tiny preset and the tests.
    """

    model_name: str = "ViT-B-32"
    pretrained: str | None = "openai"
    clip_fps: float = 2.0
    batch_size: int = 16
    random_init: dict | None = None
    weights: str | None = None  # safetensors of the image tower, for encoders that are not on the Hub

    def validate(self) -> None:
        _positive("semantic.clip_fps", self.clip_fps)
        _positive("semantic.batch_size", self.batch_size)
        if self.random_init is not None:
            _check_open_clip_fields(self.random_init)


DIS_PRESETS = ("ultrafast", "fast", "medium")


@dataclass
class MotionConfig:
    """Motion stream: dense optical flow on small greyscale frames sampled at ``flow_fps``.

    ``width`` is the width flow is computed at (height keeps the aspect ratio); magnitudes are divided by it so
    features do not depend on the input resolution.
    """

    flow_fps: float = 10.0
    algorithm: str = "dis"  # "dis" (fast, default) or "farneback"
    dis_preset: str = "ultrafast"  # OpenCV DIS preset: "ultrafast", "fast" or "medium" (finer, for small objects)
    width: int = 128
    direction_bins: int = 8
    grid: int = 4
    speed_stats: bool = False  # 3 more features: share of moving pixels, median and 90th percentile of their speed

    def validate(self) -> None:
        _positive("motion.flow_fps", self.flow_fps)
        _positive("motion.width", self.width)
        _positive("motion.direction_bins", self.direction_bins)
        _positive("motion.grid", self.grid)
        if self.algorithm not in ("dis", "farneback"):
            raise ConfigError(f"motion.algorithm must be 'dis' or 'farneback', got {self.algorithm!r}")
        if self.width < 16:
            raise ConfigError(f"motion.width must be at least 16 pixels, got {self.width}")
        if self.dis_preset not in DIS_PRESETS:
            raise ConfigError(f"motion.dis_preset must be one of {', '.join(DIS_PRESETS)}, got {self.dis_preset!r}")

    @property
    def feature_dim(self) -> int:
        """4 magnitude statistics + direction histogram + grid x grid magnitudes + frame difference + cut score
        (+ 3 speed statistics of the moving pixels with ``speed_stats``)."""
        return 4 + self.direction_bins + self.grid * self.grid + 2 + (3 if self.speed_stats else 0)


@dataclass
class FusionConfig:
    """Temporal cross-attention fusion (trainable, full precision).

    ``use_motion: false`` is the "w/o motion" ablation: the semantic tokens alone form the sequence.
    """

    d_fuse: int = 256
    heads: int = 4
    cross_layers: int = 1
    self_layers: int = 2
    dropout: float = 0.1
    use_motion: bool = True
    max_period_seconds: float = 60.0
    # DESIGN.md §9 (MuVi's channel-wise fusion): also add a zero-initialised projection of the fused token nearest
    # in time to each decoder step's input embedding, so step t sees the video at t directly.
    time_aligned: bool = False
    # Robust conditioning (issue 19): while training, each clip loses its semantic stream with this probability and,
    # independently, its motion stream, so either stream alone still steers the music and a picture unlike the
    # training set's cannot take the condition over. 0: off (inference never drops).
    stream_dropout: float = 0.0

    def validate(self) -> None:
        _positive("fusion.d_fuse", self.d_fuse)
        _positive("fusion.heads", self.heads)
        _positive("fusion.max_period_seconds", self.max_period_seconds)
        if self.d_fuse % self.heads:
            raise ConfigError(f"fusion.d_fuse ({self.d_fuse}) must be divisible by fusion.heads ({self.heads})")
        if self.cross_layers < 0 or self.self_layers < 0:
            raise ConfigError("fusion.cross_layers and fusion.self_layers must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"fusion.dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.stream_dropout < 1.0:
            raise ConfigError(f"fusion.stream_dropout must be in [0, 1), got {self.stream_dropout}")


@dataclass
class DecoderConfig:
    """The MusicGen decoder and its audio codec.

    ``base`` is a Hub id or a local folder of a ``MusicgenForConditionalGeneration`` checkpoint: its decoder and
    EnCodec are used, its T5 text encoder is dropped. ``random_init`` (a dict with ``decoder`` and ``codec`` config
    fields) builds randomly initialised versions of the same classes instead (tiny: tests and the untrained
    default model; real sizes: benchmarks without downloads).
    """

    base: str = "facebook/musicgen-small"
    quantization: str = "none"  # "none", "8bit" or "4bit" (NF4, QLoRA)
    gradient_checkpointing: bool = False
    random_init: dict | None = None
    # None: the EnCodec inside ``base``. {"type": "spectral", "weights": PATH, ...}: the fitted spectral codec of
    # model/spectral_codec.py (demo preset); ``base`` is then a MusicgenForCausalLM folder or ``random_init``.
    codec: dict | None = None

    def validate(self) -> None:
        if self.codec is not None:
            unknown = set(self.codec) - {"type", "weights", "sample_rate", "n_fft", "hop", "griffin_lim_iters"}
            if self.codec.get("type") != "spectral" or unknown:
                raise ConfigError(f"decoder.codec must be null or {{type: spectral, weights: PATH, ...}}, got {self.codec}")
        if self.quantization not in ("none", "8bit", "4bit"):
            raise ConfigError(f"decoder.quantization must be none, 8bit or 4bit, got {self.quantization!r}")
        if self.random_init is not None:
            _check_musicgen_fields(self.random_init)


def _unknown_keys(where: str, given: object, known: set[str]) -> None:
    """A typo in a ``random_init`` dict would become a silent attribute of a library config: refuse it."""
    if not isinstance(given, dict):
        raise ConfigError(f"{where} must be a mapping of config fields, got {given!r}")
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)} (not in the library's config)")


def _check_musicgen_fields(random_init: dict) -> None:
    """``decoder.random_init = {decoder: MusicgenDecoderConfig fields, codec: EncodecConfig fields}``."""
    from transformers import EncodecConfig, MusicgenDecoderConfig

    _unknown_keys("decoder.random_init", random_init, {"decoder", "codec"})
    _unknown_keys("decoder.random_init.decoder", random_init.get("decoder", {}), set(MusicgenDecoderConfig().to_dict()))
    _unknown_keys("decoder.random_init.codec", random_init.get("codec", {}), set(EncodecConfig().to_dict()))


def _check_open_clip_fields(random_init: dict) -> None:
    """``semantic.random_init``: keyword arguments of open_clip's ``CLIP`` with its vision and text tower configs."""
    import dataclasses
    import inspect

    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    _unknown_keys("semantic.random_init", random_init, set(inspect.signature(CLIP.__init__).parameters) - {"self"})
    for key, cfg in (("vision_cfg", CLIPVisionCfg), ("text_cfg", CLIPTextCfg)):
        _unknown_keys(f"semantic.random_init.{key}", random_init.get(key, {}), {f.name for f in dataclasses.fields(cfg)})


@dataclass
class LoraConfig:
    """peft LoRA on the decoder's attention projections; targets are module-name suffixes."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: list[str] = field(
        default_factory=lambda: [
            "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
            "encoder_attn.q_proj", "encoder_attn.k_proj", "encoder_attn.v_proj", "encoder_attn.out_proj",
        ]
    )

    def validate(self) -> None:
        _positive("lora.r", self.r)
        _positive("lora.alpha", self.alpha)
        if not self.targets:
            raise ConfigError("lora.targets must name at least one module")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class GuidanceConfig:
    """Classifier-free guidance: the training dropout rate and the inference scale sit together (audiocraft)."""

    condition_dropout: float = 0.2
    scale: float = 3.0
    # The text prompt's own scale (only with a text encoder and a prompt): logits = null + scale (video - null)
    # + text_scale (video+text - video); 0 ignores the prompt.
    text_scale: float = 3.0

    def validate(self) -> None:
        if not 0.0 <= self.condition_dropout <= 1.0:
            raise ConfigError(f"guidance.condition_dropout must be in [0, 1], got {self.condition_dropout}")
        if self.scale < 1.0:
            raise ConfigError(f"guidance.scale must be >= 1 (1 disables guidance), got {self.scale}")
        if not self.text_scale >= 0.0:
            raise ConfigError(f"guidance.text_scale must be >= 0 (0 ignores the prompt), got {self.text_scale}")


TOKENIZER_BYTES = "byte"  # text.tokenizer: ByT5's byte tokenizer, which needs no vocabulary file (offline)


@dataclass
class TextConfig:
    """The optional text prompt (issue 15): a frozen T5 encoder whose states, projected to the decoder width, sit
    beside the fused video states in the cross-attention memory.

    ``encoder`` is a ``MusicgenForConditionalGeneration`` checkpoint (its T5 ``text_encoder`` and ``enc_to_dec_proj``
    are used: MusicGen's own text conditioning) or a ``T5EncoderModel`` id/folder. ``tokenizer`` is a Hub id or folder
    for ``AutoTokenizer`` (None: the encoder's; MusicGen checkpoints ship T5's), or ``"byte"`` (ByT5's byte
    tokenizer: no files, offline). ``random_init`` (``T5Config`` fields) builds a randomly initialised encoder
    instead (tiny preset, tests). ``dropout`` is the training probability of dropping the text, drawn independently
    of the video's ``guidance.condition_dropout``.
    """

    enabled: bool = False
    encoder: str = "facebook/musicgen-small"
    tokenizer: str | None = None
    max_tokens: int = 64
    dropout: float = 0.3
    random_init: dict | None = None

    def validate(self) -> None:
        _positive("text.max_tokens", self.max_tokens)
        if not 0.0 <= self.dropout <= 1.0:
            raise ConfigError(f"text.dropout must be in [0, 1], got {self.dropout}")
        if self.random_init is not None:
            from transformers import T5Config

            _unknown_keys("text.random_init", self.random_init, set(T5Config().to_dict()))


@dataclass
class GenerationConfig:
    """Sampling defaults (MusicGen's: top-k 250, temperature 1)."""

    top_k: int = 250
    temperature: float = 1.0
    max_seconds: float = 30.0

    def validate(self) -> None:
        _positive("generation.top_k", self.top_k)
        _positive("generation.temperature", self.temperature)
        _positive("generation.max_seconds", self.max_seconds)


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping for ``train.py``."""

    dataset: str = ""
    output_dir: str = "runs/default"
    seed: int = 0
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    max_steps: int = 1000
    clip_seconds: float = 30.0
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"  # accelerate's values; "no" lets --precision decide (bf16 on a GPU that has it)
    eval_every: int = 200
    save_every: int = 200
    keep_checkpoints: int = 2
    log_every: int = 10
    num_workers: int = 0  # DataLoader processes building batches ahead of the step
    pin_memory: bool = True  # page-locked batches for asynchronous copies to a GPU (ignored on a CPU)
    push_to_hub: str | None = None
    # Beat-weighted loss (DESIGN.md §3, VMAs): frames where a music onset meets a video beat within +-beat_delta
    # seconds weigh 1, all others beat_alpha (VMAs: 0.05). None: the plain cross-entropy.
    beat_alpha: float | None = None
    beat_delta: float = 0.1
    # Tempo from the video (issue 19): the first lead_in_seconds of every crop weigh 1 under the beat-weighted loss;
    # with no music before them only the video says where the beats fall. 0: off.
    lead_in_seconds: float = 0.0
    # Warm start: a saved model folder (save_pretrained) whose fusion + LoRA weights training starts from, to go on
    # fine-tuning a trained model on new data; the base decoder and encoders still come from this config.
    init_from: str | None = None
    # Contrastive sync term (issue 19; DESIGN.md §3, MuVi): the time-aligned condition, through a training-only probe,
    # must tell each crop's own music from the same music half a beat off, as embedded by the frozen music tower of
    # a trained video-music head (sync_head, e.g. models/demo-retrieval). 0: off.
    sync_contrastive_weight: float = 0.0
    sync_head: str | None = None

    def validate(self) -> None:
        for name in ("batch_size", "grad_accum", "lr", "max_steps", "clip_seconds", "eval_every", "save_every",
                     "keep_checkpoints", "log_every"):
            _positive(f"train.{name}", getattr(self, name))
        if self.warmup_steps < 0 or self.num_workers < 0:
            raise ConfigError("train.warmup_steps and train.num_workers must be >= 0")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ConfigError(f"train.mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        if self.beat_alpha is not None and not 0 < self.beat_alpha <= 1:
            raise ConfigError(f"train.beat_alpha must be in (0, 1] or null, got {self.beat_alpha}")
        if self.beat_delta < 0:
            raise ConfigError(f"train.beat_delta must be >= 0, got {self.beat_delta}")
        if self.lead_in_seconds < 0:
            raise ConfigError(f"train.lead_in_seconds must be >= 0, got {self.lead_in_seconds}")
        if not self.sync_contrastive_weight >= 0:
            raise ConfigError(f"train.sync_contrastive_weight must be >= 0, got {self.sync_contrastive_weight}")
        if self.sync_contrastive_weight > 0 and not self.sync_head:
            raise ConfigError("train.sync_contrastive_weight needs train.sync_head: the folder of a trained "
                              "video-music embedding head (python -m training.retrieval_head), e.g. models/demo-retrieval")


@dataclass
class V2MConfig:
    """The whole system; ``validate`` also checks invariants that span parts."""

    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    text: TextConfig = field(default_factory=TextConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "V2MConfig":
        for part in dataclasses.fields(self):
            getattr(self, part.name).validate()
        if self.train.sync_contrastive_weight > 0 and not self.fusion.time_aligned:
            raise ConfigError("train.sync_contrastive_weight acts on the time-aligned condition: set fusion.time_aligned")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _positive(name: str, value: Any) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")


def _check_type(key: str, value: Any, annotation: Any) -> Any:
    """Return ``value`` converted to ``annotation`` when that is lossless (int -> float), else raise."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if type(None) in options and (value is None or (isinstance(value, str) and value.lower() == "none")):
            return None  # "none" on the command line empties an optional field; a str field keeps the word
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(key, value, option)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {type(value).__name__} {value!r}")
        (item,) = typing.get_args(annotation) or (Any,)
        return [_check_type(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:  # YAML 1.1 reads "1e-4" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if annotation is dict and isinstance(value, dict):
        return value
    if isinstance(annotation, type) and isinstance(value, annotation) and not (
        annotation is int and isinstance(value, bool)
    ):
        return value
    raise ConfigError(f"{key} must be {getattr(annotation, '__name__', annotation)}, got {type(value).__name__} {value!r}")


def _section_from_dict(cls: type, data: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s) in '{prefix}': {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    kwargs = {k: _check_type(f"{prefix}.{k}", v, hints[k]) for k, v in data.items()}
    return cls(**kwargs)


def config_from_dict(data: dict) -> V2MConfig:
    """Build and validate a ``V2MConfig`` from nested dicts; unknown sections or keys raise ``ConfigError``."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    hints = typing.get_type_hints(V2MConfig)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(unknown)} (known: {', '.join(hints)})")
    sections = {}
    for name, cls in hints.items():
        section = data.get(name) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"config section '{name}' must be a mapping, got {type(section).__name__}")
        sections[name] = _section_from_dict(cls, section, name)
    return V2MConfig(**sections).validate()


def resolve_preset(name_or_path: str) -> Path:
    """``tiny`` -> ``configs/tiny.yaml``; a path is used as it is."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    return PRESET_DIR / f"{name_or_path}.yaml"


def load_config(name_or_path: str = "tiny", overrides: list[str] | None = None) -> V2MConfig:
    """Load a preset by name (``tiny``, ``small``, ``medium``, ``demo``) or YAML path, apply ``a.b=value`` overrides."""
    path = resolve_preset(name_or_path)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise ConfigError(f"no config {name_or_path!r} (presets: {known}; or give a .yaml path)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    return config_from_dict(apply_overrides(data, overrides or []))


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` strings; values are parsed as YAML (``3e-4``, ``true``, ``[a, b]``)."""
    data = {k: dict(v or {}) for k, v in data.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ConfigError(f"override {item!r} must look like section.key=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: value is not valid YAML") from None
        data.setdefault(parts[0], {})[parts[1]] = value
    return data
