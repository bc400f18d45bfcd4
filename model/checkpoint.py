"""The checkpoint format of ``VideoToMusic``: ``save_pretrained`` / ``from_pretrained`` folders and Hub repos.

A folder (or Hub repo) holds::

    config.json          {"format": "video-to-music-lora", "format_version": 1, "config": <the full V2MConfig>}
    model.safetensors    the trained part only: fusion (with its projection) and the LoRA adapters
    README.md            a model card with the licences of every part
    semantic.safetensors, codec.safetensors, decoder/   frozen parts no Hub id can supply (a decoder pretrained
                         here, a fitted codec, a random-init image tower), named relative to the folder
    text_encoder/        with ``text.enabled``, a T5 encoder no Hub id supplies (random-init or a local folder), as a
                         ``T5EncoderModel`` folder (and its tokenizer unless that is "byte"); a Hub encoder is named

Why not ``huggingface_hub.PyTorchModelHubMixin``: it rebuilds a class from JSON ``__init__`` arguments and loads
one full state dict, while this format rebuilds the frozen parts from their own Hub ids, bundles the local ones and
loads only the trained part with strict key checks. The loader takes the mixin's keyword arguments (``revision``,
``token``, ``cache_dir``, ``local_files_only``, ``force_download``) so it reads like the rest of the ecosystem.

Safety: tensors come only from safetensors (no pickle), no remote code runs, and a stored config cannot point a
frozen part at a path outside its folder.
"""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from common.files import atomic_write_text, replace_folder
from model.config import V2MConfig, config_from_dict
from model.decoder import base_model
from model.errors import CheckpointError

CHECKPOINT_FORMAT = "video-to-music-lora"
CHECKPOINT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
SEMANTIC_NAME = "semantic.safetensors"
CODEC_NAME = "codec.safetensors"
BASE_DECODER_DIR = "decoder"
TEXT_ENCODER_DIR = "text_encoder"
CARD_NAME = "README.md"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_FILES = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, SEMANTIC_NAME, CODEC_NAME, f"{BASE_DECODER_DIR}/*",
             f"{TEXT_ENCODER_DIR}/*"]


# ---------------------------------------------------------------------------------------------------- saving


def save_model(model, directory: str | Path, card: str | None = None) -> None:
    """Write ``model`` (a ``VideoToMusic``) as a folder, built beside ``directory`` and swapped in whole.

    A save killed at any point leaves the previous folder as it was. ``card`` replaces the generated model card.
    """
    with replace_folder(directory) as folder:
        config = bundle_local_parts(model, folder)
        meta = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "config": config}
        atomic_write_text(folder / CONFIG_NAME, json.dumps(meta, indent=2))
        save_file(model.trainable_state_dict(), str(folder / WEIGHTS_NAME), metadata={"format": CHECKPOINT_FORMAT})
        atomic_write_text(folder / CARD_NAME, card or model_card(model.config))


def bundle_local_parts(model, directory: Path) -> dict:
    """Save the frozen parts that no Hub id supplies into ``directory``; returns the config naming them."""
    config = model.config.to_dict()
    semantic, decoder = config["semantic"], config["decoder"]
    if semantic["random_init"] is not None or semantic["weights"] is not None:
        tower = model.semantic_encoder.visual.state_dict()
        save_file({k: v.detach().float().cpu().contiguous() for k, v in tower.items()}, str(directory / SEMANTIC_NAME))
        semantic["weights"] = SEMANTIC_NAME
    if decoder["codec"] is not None:  # spectral codec + a decoder that is not on the Hub
        model.codec.save(directory / CODEC_NAME)
        decoder["codec"]["weights"] = CODEC_NAME
        save_base_decoder(model.decoder, directory / BASE_DECODER_DIR)
        decoder["base"], decoder["random_init"] = BASE_DECODER_DIR, None
    if model.text_conditioner is not None:
        bundle_text_encoder(model.text_conditioner, config["text"], directory)
    return config


def bundle_text_encoder(conditioner, text: dict, directory: Path) -> None:
    """A text encoder that is not on the Hub (random-init, a local folder) goes into ``text_encoder/`` (fp32, with
    its tokenizer unless that is the file-less "byte" one) and ``text`` (the config section) names it there; a Hub
    encoder stays a reference to its id, as the decoder base does."""
    if text["random_init"] is None and HUB_ID.match(text["encoder"]) and not Path(text["encoder"]).exists():
        return
    target = directory / TEXT_ENCODER_DIR
    encoder = conditioner.encoder
    encoder.save_pretrained(target, state_dict={k: v.detach().float().cpu() for k, v in encoder.state_dict().items()})
    if conditioner.tokenizer_name != "byte":
        conditioner.tokenizer.save_pretrained(target)
    byte = conditioner.tokenizer_name == "byte"
    text.update(encoder=TEXT_ENCODER_DIR, random_init=None, tokenizer="byte" if byte else None)


def save_base_decoder(decoder: nn.Module, directory: Path) -> None:
    """The frozen base of a (possibly peft-wrapped) decoder as a plain ``MusicgenForCausalLM`` folder, in fp32."""
    base = base_model(decoder)
    state = {k.replace(".base_layer", ""): v.detach().float().cpu().contiguous() for k, v in base.state_dict().items()
             if "lora_" not in k}
    directory.mkdir(parents=True, exist_ok=True)
    base.config.save_pretrained(directory)
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})


def push_model(model, repo_id: str, private: bool = False, token: str | None = None,
               commit_message: str = "Upload video-to-music model") -> str:
    """``save_pretrained`` into a temporary folder and upload it to the Hub; returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, Path(tmp) / "model")
        api.upload_folder(repo_id=repo_id, folder_path=str(Path(tmp) / "model"), commit_message=commit_message)
    return str(url)


# ---------------------------------------------------------------------------------------------------- loading


def resolve_folder(name: str, **hub: object) -> Path:
    """A local folder as it is; otherwise a Hub repo id, downloading only the files of this format."""
    path = Path(name)
    if path.is_dir():
        return path
    if path.exists() or not HUB_ID.match(name):
        raise CheckpointError(f"{name}: not a model folder or a Hub repo id (org/name)")
    from huggingface_hub import snapshot_download

    options = {k: v for k, v in hub.items() if v is not None}
    try:
        return Path(snapshot_download(name, allow_patterns=HUB_FILES, **options))
    except Exception as error:  # the Hub client raises many types (offline, missing, gated, ...)
        first = str(error).splitlines()[0][:150] if str(error) else ""
        raise CheckpointError(f"{name}: could not fetch from the Hub ({type(error).__name__}: {first})") from None


def read_versioned_meta(folder: Path, fmt: str, version: int, missing: str) -> dict:
    """``folder/config.json`` as a dict, refused (one-line ``CheckpointError``) unless it is valid JSON of format
    ``fmt`` at ``version``; ``missing`` says what a folder without it is not. Shared by every folder format here."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {CONFIG_NAME} ({missing})")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise CheckpointError(f"{path}: not a {fmt} folder")
    if meta.get("format_version") != version:
        raise CheckpointError(f"{path}: format version {meta.get('format_version')} (this code reads {version})")
    return meta


def read_config(folder: Path, overrides: dict) -> V2MConfig:
    """The stored config, with ``overrides`` (sections of dicts) applied and local part paths resolved safely."""
    meta = read_versioned_meta(folder, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "not written by save_pretrained")
    data = meta.get("config") or {}
    (data.get("decoder") or {}).pop("compute_dtype", None)  # format 1 before --precision: now chosen at load time
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    try:
        config = config_from_dict(data)
    except ValueError as error:
        raise CheckpointError(f"{folder}: {error}") from None
    base = config.decoder.base  # a Hub id, or a folder inside the checkpoint (a decoder pretrained here)
    if Path(base).is_absolute() or (folder / base).exists() or not HUB_ID.match(base):
        config.decoder.base = inside(folder, base, "base model")
    if config.decoder.codec is not None:
        config.decoder.codec["weights"] = inside(folder, str(config.decoder.codec.get("weights", "")), "codec")
    if config.semantic.weights is not None:
        config.semantic.weights = inside(folder, config.semantic.weights, "image encoder")
    text = config.text
    local = Path(text.encoder).is_absolute() or (folder / text.encoder).exists() or not HUB_ID.match(text.encoder)
    if text.enabled and text.random_init is None and local:  # a bundled encoder (``bundle_text_encoder``)
        text.encoder = inside(folder, text.encoder, "text encoder")
    return config


def inside(folder: Path, relative: str, what: str) -> str:
    """A path named by a stored config, resolved inside the checkpoint folder — never outside it."""
    resolved = (folder / relative).resolve()
    if not relative or Path(relative).is_absolute() or not resolved.is_relative_to(folder.resolve()):
        raise CheckpointError(f"{folder}: config names {what} {relative!r} outside the model folder; refused")
    if not resolved.exists():
        raise CheckpointError(f"{folder}: config names {what} {relative!r}, which the folder does not have")
    return str(resolved)


def read_trainable(path: Path) -> dict[str, torch.Tensor]:
    """The trained tensors of a ``model.safetensors`` (one-line errors for a missing or corrupt file)."""
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: no {WEIGHTS_NAME}")
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises several types for corrupt files
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(error)[:120]})") from None


def check_state(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], source: str) -> None:
    """Refuse any missing, unexpected or mis-shaped tensor (a silent partial load is the worst outcome)."""
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise CheckpointError(f"{source}: weights do not match the config (missing {missing[:3]}, unexpected {extra[:3]})")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(f"{source}: {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")


# ---------------------------------------------------------------------------------------------------- model card

LICENSES = {  # what users download or get with each part, and its licence
    "musicgen": ("MusicGen decoder and 32 kHz EnCodec (Meta)", "CC-BY-NC-4.0 (no commercial use)"),
    "clip-openai": ("CLIP image tower, OpenAI weights", "MIT"),
    "clip-laion": ("CLIP image tower, LAION weights (open_clip)", "MIT"),
    "local": ("frozen part trained or fitted by the model's author", "see the training data below"),
    "random": ("randomly initialised frozen part", "no third-party weights"),
    "adapters": ("fusion, projection and LoRA adapters (this repo)", "as the most restrictive of the above"),
}


def part_licences(config: V2MConfig) -> list[tuple[str, str]]:
    """(part, licence) of every part a model of ``config`` is made of."""
    decoder = config.decoder
    if decoder.random_init is not None:
        parts = [LICENSES["random"]]
    elif decoder.codec is not None:
        parts = [LICENSES["local"]]
    else:
        parts = [LICENSES["musicgen"]] if "musicgen" in decoder.base else [LICENSES["local"]]
    semantic = config.semantic
    if semantic.random_init is not None or semantic.pretrained is None:
        parts.append(("CLIP-style image tower: " + LICENSES["random"][0], LICENSES["random"][1]))
    else:
        parts.append(LICENSES["clip-openai" if semantic.pretrained == "openai" else "clip-laion"])
    return parts + [LICENSES["adapters"]]


def card_license(config: V2MConfig) -> str:
    """The Hub metadata licence: MusicGen's non-commercial licence when its weights are inside, else "other"."""
    uses_musicgen = config.decoder.random_init is None and config.decoder.codec is None and "musicgen" in config.decoder.base
    return "cc-by-nc-4.0" if uses_musicgen else "other"


def model_card(config: V2MConfig) -> str:
    rows = "\n".join(f"| {part} | {licence} |" for part, licence in part_licences(config))
    return (
        f"---\nlibrary_name: peft\nlicense: {card_license(config)}\ntags: [video-to-music, musicgen, lora]\n---\n"
        f"# Video-to-music LoRA + fusion\n\nBase decoder: `{config.decoder.base}` "
        f"({config.decoder.quantization}); image encoder: open_clip `{config.semantic.model_name}` "
        f"(`{config.semantic.pretrained}`).\n\nOnly the trained weights (temporal fusion, projection, LoRA) are "
        "stored here; the base models are loaded from their own repos. Load with "
        "`VideoToMusic.from_pretrained(...)` from this project.\n\n"
        "## Licences\n\n| part | licence |\n|---|---|\n" + rows + "\n\nThe code that loads it: Apache-2.0. "
        "Music made with a model carries the terms of its weights and of its training data; describe the data here.\n"
    )
