"""Device and precision, resolved in one place for every entry point (DESIGN.md §11).

``--device auto|cpu|cuda|cuda:N|mps`` and ``--precision auto|fp32|bf16|fp16|int8`` become one ``Placement``: the
device every part sits on and the storage of each part. What each precision means:

| precision | CLIP image tower | decoder | codec | trainable (fusion, LoRA) |
|---|---|---|---|---|
| fp32 | fp32 | fp32 | fp32 | fp32 |
| bf16 | bf16 | GPU: bf16 weights and activations; CPU: fp32 weights, sampled through bf16 copies | fp32 | fp32, bf16 autocast |
| fp16 | fp16 | fp16 weights and activations (GPU only) | fp32 | fp32, fp16 autocast |
| int8 | GPU: fp16; CPU: bf16 where the CPU computes it natively (AVX512-BF16 or AMX), else fp32 | GPU: bitsandbytes 8-bit base; CPU: sampled through int8 copies (fbgemm) | fp32 | fp32 |
| auto | inference: int8 on a CPU, bf16 on a GPU that supports it (else fp16), fp32 on MPS; training: fp32 on a CPU, as inference on a GPU |

Measured for ``auto`` on CPUs (``python -m bench``, ``small`` sizes, one thread): int8 sampling 2.4x faster than
fp32 at logit cosine 0.998 on an AVX-512/AMX Xeon, 3.0x on an AVX2-only AMD EPYC; a bf16 CLIP tower 1.7x faster
(embedding cosine 0.99996) on the Xeon but 8x *slower* on the EPYC, which has no bf16 instructions: hence the
CPU check.

The codec always runs in fp32 (EnCodec's convolutions and Griffin-Lim lose more than they gain in half
precision). Quantized loads (bitsandbytes) get ``device_map={"": device}`` so nothing lands elsewhere.
Nothing else in the project picks a device: code creates tensors on the device of the tensors they meet.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from common.errors import UserError

DEVICES = "auto, cpu, cuda, cuda:N or mps"
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceError(UserError):
    """A device or precision that this machine cannot provide."""


@dataclass(frozen=True)
class Placement:
    """Where the model runs and how each part is stored.

    device:        every part's device
    precision:     the resolved precision (fp32, bf16, fp16 or int8; never auto)
    semantic:      dtype of the CLIP image tower
    decoder:       dtype of the decoder's (non-quantized) weights and activations
    quantization:  "none" or "8bit": a bitsandbytes base chosen by the precision (the config may ask for 4/8-bit too)
    sampling:      weight storage of the fast sampling path: "float32" (the live weights), "bfloat16" or "int8"
    mixed:         accelerate's mixed_precision for training: "no", "bf16" or "fp16"
    """

    device: torch.device
    precision: str
    semantic: torch.dtype
    decoder: torch.dtype
    quantization: str
    sampling: str
    mixed: str

    def describe(self) -> str:
        return f"{self.device} / {self.precision}"


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` is the first CUDA GPU when there is one, else MPS (Apple), else the CPU; an unusable choice raises."""
    text = str(spec).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise DeviceError(f"--device {spec!r} is not a device ({DEVICES})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {spec}: no CUDA GPU is visible to PyTorch (torch {torch.__version__}, "
                              f"CUDA build {torch.version.cuda}); use --device cpu")
        index = 0 if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise DeviceError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    if device.type == "mps" and not _mps_available():
        raise DeviceError(f"--device {spec}: MPS is not available here")
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"--device {spec!r}: not supported ({DEVICES})")
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _gpu_half(device: torch.device) -> str:
    """bf16 where the GPU computes it natively (Ampere and later), else fp16."""
    with torch.cuda.device(device):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def resolve_precision(precision: str, device: torch.device, training: bool = False) -> str:
    """``auto`` -> a concrete precision for ``device``; a precision the device cannot run raises."""
    if precision not in PRECISIONS:
        raise DeviceError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            return _gpu_half(device)
        if device.type == "cpu":
            return "fp32" if training else "int8"
        return "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise DeviceError("--precision fp16 needs a GPU (CPUs compute fp16 slowly or not at all); use bf16 or int8")
    if precision == "int8" and training:
        raise DeviceError("--precision int8 is for inference; train with fp32/bf16/fp16 (QLoRA: decoder.quantization)")
    if precision == "int8" and device.type == "mps":
        raise DeviceError("--precision int8 is not supported on MPS; use fp32 or fp16")
    return precision


def cpu_computes_bf16() -> bool:
    """True when this CPU has bf16 instructions (AVX512-BF16 or AMX): without them bf16 matmuls are emulated and
    run several times slower than fp32 (measured: 8x for the CLIP tower on an AVX2 CPU)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def placement_for(device: str | torch.device = "auto", precision: str = "auto", training: bool = False) -> Placement:
    """The ``Placement`` of ``--device`` and ``--precision`` (see the module table)."""
    device = resolve_device(device)
    precision = resolve_precision(precision, device, training)
    gpu = device.type != "cpu"
    if precision == "int8":
        semantic = torch.float16 if gpu else (torch.bfloat16 if cpu_computes_bf16() else torch.float32)
        return Placement(device, precision, semantic, torch.float16 if gpu else torch.float32,
                         "8bit" if gpu else "none", "float32" if gpu else "int8", "no")
    dtype = DTYPES[precision]
    on_cpu_half = not gpu and precision == "bf16"  # a CPU keeps fp32 weights and samples through bf16 copies
    return Placement(device, precision, dtype, torch.float32 if on_cpu_half else dtype, "none",
                     "bfloat16" if on_cpu_half else "float32", "no" if precision == "fp32" else precision)


def seeded_generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on ``device`` (samplers draw on the device of their probabilities)."""
    return torch.Generator(device=device).manual_seed(seed)


def move_module(module: torch.nn.Module, device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
    """``module.to(device, dtype)``, skipped when every tensor is already on ``device`` with floating tensors in
    ``dtype``: nothing to do then, and PyTorch cannot re-assign fake-device parameters (the device tests)."""
    tensors = [*module.parameters(), *module.buffers()]
    on_device = device is None or all(t.device == device for t in tensors)
    in_dtype = dtype is None or all(t.dtype == dtype for t in tensors if t.is_floating_point())
    if not (on_device and in_dtype):
        module.to(device=device, dtype=dtype)
