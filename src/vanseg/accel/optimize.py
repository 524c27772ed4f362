"""A faster inference copy of a segmentor: folded norms, channels_last, autocast, compile.

``optimize(model)`` returns a new eval-mode module with the segmentor's call: NCHW float images
in, float32 logits at the input size out. It never modifies the model passed in. What it does:

* **Folding** (exact up to float rounding; :func:`vanseg.accel.fold.fold_model`): every module
  that owns a ``fuse()`` is replaced by its inference twin. An eval BatchNorm that follows a
  conv (patch embeddings, UperNet/FPN ``ConvNormAct``) becomes the conv's weight and bias; in a
  VAN block the BatchNorms, layer scales and the attention shortcut become a per-channel
  affine of the residual and the 1x1 convs' weights (``vanseg.models.backbones.van_fused``).
* **channels_last**: VAN's depthwise 5x5 / 7x7-dilated convolutions run several times faster
  in NHWC on CPU (oneDNN) and on GPU (cuDNN). The stage LayerNorm runs on the NHWC view so the
  layout is kept between stages.
* **Precision**: ``bf16``/``fp16`` autocast; NMF stays in float32 (it divides by small
  numbers, docs/reference.md §6), the logits come back as float32.
* **CPU kernels** (:func:`_use_cpu_kernels`; each measured faster by
  ``vanseg.tools.benchmark`` on a 2-core x86 CPU): oneDNN-fused GELU / gating / residual in the
  VAN blocks, the MLP in cache-sized row bands, the dilated depthwise conv on its 3x3 phases
  (twins with an ``enable_cpu_kernels()`` method), Winograd for the 512-wide dense 3x3 head
  convs. Light-Ham's squeeze conv runs per stage before the resize and UperNet's fusing conv
  reads its inputs as parts (all devices; their ``fuse()`` twins).
* **Final resize** into a buffer reused once the caller has dropped the previous result.
* **compile**: ``torch.compile`` of the folded network (inductor; the CPU kernels give way
  to inductor's own fusions inside compiled graphs).

GroupNorm (Ham heads) depends on the data and is not folded. The NMF bases are drawn exactly as
in the plain model, so with the same seed the fp32 result matches it within 1e-4 (relative).

This module imports nothing from ``vanseg.models``: it reads a segmentor by its attributes
(``decode_head``, ``extract``, ``num_classes``).
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vanseg.accel import kernels, winograd
from vanseg.accel.fast_layers import NCHWConv, RecycledResize
from vanseg.accel.fold import fold_model
from vanseg.accel.winograd import WinogradConv2d
from vanseg.errors import ConfigError

__all__ = [
    "PRECISIONS",
    "AutocastSegmentor",
    "FastSegmentor",
    "fold_model",
    "for_inference",
    "max_relative_difference",
    "optimize",
]

log = logging.getLogger("vanseg")

Precision = Literal["fp32", "bf16", "fp16"]
#: Accepted ``precision`` values and the autocast dtype they select (None: no autocast).
PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


#: Dense 3x3 head convs with at least this many input and output channels run Winograd
#: (UperNet's 512-wide convs, HamNet's squeeze/align); narrower ones were not measured faster.
WINOGRAD_MIN_CHANNELS = 512


def _use_cpu_kernels(model: nn.Module, precision: str, channels_last: bool) -> None:
    """The CPU levers: each twin's ``enable_cpu_kernels()`` in channels_last (oneDNN-fused VAN
    blocks, phase-split dilated convs), and Winograd for the wide dense 3x3 head convs (already
    NCHW, :class:`NCHWConv`).

    Winograd is F(4x4, 3x3) in fp32 (4x fewer multiplications, ~3e-6 relative error) and
    F(2x2, 3x3) under bf16/fp16 autocast, where F(4x4)'s output transform would amplify the
    low-precision rounding. Small calls fall back to ``F.conv2d`` (``winograd_pays_off``).
    """
    if channels_last:
        for module in list(model.modules()):
            enable = getattr(module, "enable_cpu_kernels", None)
            if callable(enable):
                enable()
    tile = 4 if precision == "fp32" else 2
    for name, module in model.named_modules():
        conv = module.conv if isinstance(module, NCHWConv) else None
        if (
            conv is not None
            and winograd.supports(conv)
            and min(conv.in_channels, conv.out_channels) >= WINOGRAD_MIN_CHANNELS
        ):
            module.conv = WinogradConv2d(conv, tile=tile, autocast_tile=tile, name=name)


class LowResLogits(nn.Module):
    """A folded segmentor's network under autocast: images -> float32 logits at 1/4 or 1/8."""

    def __init__(self, model: nn.Module, precision: Precision, channels_last: bool) -> None:
        super().__init__()
        self.model = model
        self.precision = precision
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        # CPU-only levers (measured with vanseg.tools.benchmark); cuDNN has its own.
        if next(model.parameters()).device.type == "cpu":
            _use_cpu_kernels(self.model, precision, channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        dtype = PRECISIONS[self.precision]
        with torch.autocast(images.device.type, dtype=dtype, enabled=dtype is not None):
            logits = self.model.decode_head(self.model.extract(images))
        # Resizing in the autocast dtype would only round further; the low-resolution logits
        # are small, so convert first and resize in float32 (in the NHWC layout when chosen).
        if self.channels_last:
            logits = logits.contiguous(memory_format=torch.channels_last)
        return logits.float()


class FastSegmentor(nn.Module):
    """Runs a folded segmentor in channels_last under autocast; float32 logits at input size.

    Args:
        model: A folded segmentor (:func:`fold_model`).
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast dtype; NMF stays float32).
        channels_last: Convert weights and inputs to NHWC.
        compile: ``torch.compile`` the network (the final resize stays eager: it writes into
            a recycled buffer, :class:`RecycledResize`).
    """

    def __init__(
        self, model: nn.Module, precision: Precision, channels_last: bool, compile: bool = False
    ) -> None:
        super().__init__()
        self.network: nn.Module = LowResLogits(model, precision, channels_last)
        self.precision = precision
        self.channels_last = channels_last
        self.compiled = compile
        self.num_classes: int = model.num_classes
        if compile:
            self.network = torch.compile(self.network)
        self.resize = RecycledResize()

    def extra_repr(self) -> str:
        return (
            f"precision={self.precision}, channels_last={self.channels_last}, "
            f"compiled={self.compiled}"
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float -> float32 logits (B, K, H, W)."""
        return self.resize(self.network(images), images.shape[2:])


def _check_device(model: nn.Module, precision: str) -> None:
    device = next(model.parameters()).device
    if device.type == "cpu" and precision != "fp32":
        # Allowed everywhere; where this CPU has no native kernels of the dtype (fp16 on most,
        # bf16 without AVX512-BF16/AMX), the ops run in software and slower than fp32.
        if not kernels.fused_ops(PRECISIONS[precision]):
            log.warning(
                "precision=%s: this CPU has no native %s kernels, so it runs slower than fp32 "
                "(python -m vanseg.tools.benchmark measures it); precision=fp32 is faster here",
                precision,
                precision,
            )
        return
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"precision=bf16 needs a GPU with bfloat16 support; {torch.cuda.get_device_name()} "
            "has none. Use precision=fp16 or fp32."
        )


def _is_segmentor(model: nn.Module) -> bool:
    """Whether ``model`` has a segmentor's parts: ``extract`` (backbone and neck), then
    ``decode_head``, and ``num_classes`` (:class:`vanseg.models.Segmentor`)."""
    return (
        isinstance(model, nn.Module)
        and callable(getattr(model, "extract", None))
        and isinstance(getattr(model, "decode_head", None), nn.Module)
        and hasattr(model, "num_classes")
    )


def optimize(
    model: nn.Module,
    precision: Precision = "fp32",
    compile: bool = False,
    channels_last: bool = True,
) -> nn.Module:
    """A faster eval-mode copy of a :class:`vanseg.models.Segmentor` with the same call.

    Args:
        model: The segmentor (not modified; its device is kept).
        precision: ``fp32`` (logits within 1e-4 relative of the plain model), ``bf16`` or
            ``fp16`` (autocast; NMF in float32; float32 logits).
        compile: Wrap the result in ``torch.compile`` (first calls compile; later ones are fast).
        channels_last: Run in NHWC memory layout (faster for VAN's depthwise convs).

    Returns:
        A module mapping (B, 3, H, W) float images to float32 logits (B, K, H, W).
    """
    if precision not in PRECISIONS:
        raise ConfigError(
            f"precision must be one of {sorted(PRECISIONS)}, got {precision!r} "
            "(inference.precision)"
        )
    if not _is_segmentor(model):
        raise ConfigError(
            f"optimize() takes a vanseg Segmentor, got {type(model).__name__}; build or load "
            "one with vanseg.build_model / vanseg.load_model"
        )
    _check_device(model, precision)
    return FastSegmentor(fold_model(model), precision, channels_last, compile).eval()


class AutocastSegmentor(nn.Module):
    """The unchanged model run under autocast (``inference.fast=false`` with bf16/fp16)."""

    def __init__(self, model: nn.Module, precision: Precision) -> None:
        super().__init__()
        self.model = model
        self.precision = precision

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.autocast(images.device.type, dtype=PRECISIONS[self.precision]):
            logits = self.model.decode_head(self.model.extract(images))
        size = tuple(images.shape[2:])
        return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)


def for_inference(model: nn.Module, precision: str = "fp32", fast: bool = False) -> nn.Module:
    """The model that ``inference.precision`` / ``inference.fast`` select (eval.py, predict.py).

    ``fast=false, precision=fp32`` returns ``model`` itself (the faithful path); ``fast=true``
    returns :func:`optimize` of it; ``fast=false`` with bf16/fp16 runs it under autocast.
    Set the NMF ``eval_seed`` before calling: the copy keeps it.
    """
    if precision not in PRECISIONS:
        raise ConfigError(
            f"inference.precision must be one of {sorted(PRECISIONS)}, got {precision!r}"
        )
    if fast:
        return optimize(model, precision)  # type: ignore[arg-type]
    if precision == "fp32":
        return model
    _check_device(model, precision)
    return AutocastSegmentor(model.eval(), precision).eval()  # type: ignore[arg-type]


def max_relative_difference(reference: torch.Tensor, other: torch.Tensor) -> float:
    """``max |other - reference| / max |reference|``: the accuracy measure of the fast path."""
    ref = reference.float()
    return float((other.float() - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
