"""A faster inference copy of a segmentor: folded norms, channels_last, autocast, compile.

``optimize(model)`` returns a new eval-mode module with the segmentor's call: NCHW float images
in, float32 logits at the input size out. It never modifies the model passed in. What it does:

* **Folding** (exact up to float rounding): an eval BatchNorm that follows a conv (patch
  embeddings, UperNet/FPN ``ConvNormAct``) becomes the conv's weight and bias. In a VAN block
  the BatchNorm *before* ``proj_1``/``fc1`` is folded into their input side, the layer scale
  into ``proj_2``/``fc2``, and the shortcut that adds the normalised input (``Attention``) into
  a per-channel affine of the residual, so ``x + ls * (W BN(x) + BN(x))`` becomes
  ``x * s + W' x`` with a single fused multiply-add.
* **channels_last**: VAN's depthwise 5x5 / 7x7-dilated convolutions run several times faster
  in NHWC on CPU (oneDNN) and on GPU (cuDNN). The stage LayerNorm runs on the NHWC view so the
  layout is kept between stages.
* **Precision**: ``bf16``/``fp16`` autocast; NMF stays in float32 (it divides by small
  numbers, docs/reference.md §6), the logits come back as float32.
* **CPU kernels** (:func:`_use_cpu_kernels`; each measured faster by
  ``vanseg.tools.benchmark`` on a 2-core x86 CPU): oneDNN-fused GELU / gating / residual in the
  VAN blocks, the MLP in cache-sized row bands, the dilated depthwise conv on its 3x3 phases,
  Winograd for the 512-wide dense 3x3 head convs. Light-Ham's squeeze conv runs per stage
  before the resize and UperNet's fusing conv reads its inputs as parts (all devices).
* **Final resize** into a buffer reused once the caller has dropped the previous result.
* **compile**: ``torch.compile`` of the folded network (inductor; the CPU kernels give way
  to inductor's own fusions inside compiled graphs).

GroupNorm (Ham heads) depends on the data and is not folded. The NMF bases are drawn exactly as
in the plain model, so with the same seed the fp32 result matches it within 1e-4 (relative).
"""

from __future__ import annotations

import copy
import logging
from typing import Literal

import torch
from torch import nn

from vanseg.accel import kernels, winograd
from vanseg.accel.fast_layers import (
    CastCache,
    FastLightHamHead,
    FastUPerHead,
    NCHWConv,
    PhaseDilatedConv,
    PointwiseConv,
    RecycledResize,
    depthwise_gelu,
    is_pointwise,
    linear_nhwc,
)
from vanseg.accel.winograd import WinogradConv2d
from vanseg.errors import ConfigError
from vanseg.models.backbones.van import Block, OverlapPatchEmbed, Stage
from vanseg.models.heads.base import resize
from vanseg.models.heads.light_ham import LightHamHead
from vanseg.models.heads.upernet import UPerHead
from vanseg.models.layers.conv import ConvNormAct
from vanseg.models.segmentor import Segmentor

__all__ = [
    "PRECISIONS",
    "FastSegmentor",
    "fold_batchnorm",
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


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(scale, shift)`` of an eval BatchNorm: ``bn(x) = x * scale + shift``."""
    if bn.running_mean is None or bn.running_var is None:
        raise ConfigError(
            f"BatchNorm {bn} has no running statistics (track_running_stats=False); it cannot "
            "be folded. Use the plain model (inference.fast=false)."
        )
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias.detach() - bn.running_mean * scale
    return scale, shift


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv equal to ``bn(conv(x))`` with ``bn`` in eval mode (float64 arithmetic)."""
    scale, shift = (t.double() for t in _bn_affine(bn))
    fused = copy.deepcopy(conv)
    weight = conv.weight.detach().double() * scale.view(-1, 1, 1, 1)
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(scale)
    fused.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=False)
    fused.bias = nn.Parameter((bias * scale + shift).to(conv.weight.dtype), requires_grad=False)
    return fused


def _fold_input_affine(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> nn.Conv2d:
    """A new 1x1 conv equal to ``conv(x * scale + shift)`` (exact: no padding involved)."""
    if conv.kernel_size != (1, 1) or conv.groups != 1:
        raise ConfigError(f"only a dense 1x1 conv can absorb an input affine, got {conv}")
    w = conv.weight.detach().double()
    fused = copy.deepcopy(conv)
    bias = conv.bias.detach().double() if conv.bias is not None else w.new_zeros(w.shape[0])
    fused.weight = nn.Parameter((w * scale.double().view(1, -1, 1, 1)).float())
    fused.bias = nn.Parameter((bias + w[:, :, 0, 0] @ shift.double()).float())
    return fused


def _scale_output(conv: nn.Conv2d, scale: torch.Tensor, extra_bias: torch.Tensor) -> nn.Conv2d:
    """A new conv equal to ``conv(x) * scale + extra_bias``."""
    w = conv.weight.detach().double()
    s = scale.detach().double()
    fused = copy.deepcopy(conv)
    bias = conv.bias.detach().double() if conv.bias is not None else s.new_zeros(s.shape)
    fused.weight = nn.Parameter((w * s.view(-1, 1, 1, 1)).float())
    fused.bias = nn.Parameter((bias * s + extra_bias.double()).float())
    return fused


#: Rows of the VAN MLP's hidden map processed at once on CPU: about this many bytes, so the
#: band stays in cache between fc1, the depthwise conv and fc2 (measured on 2 cores).
MLP_BAND_BYTES = 2 * 2**20


class FoldedBlock(nn.Module):
    """A VAN :class:`Block` in eval mode with its BatchNorms and layer scales folded.

    ``x + ls1 * (proj_2(LKA(GELU(proj_1(BN1(x))))) + BN1(x))`` is computed as
    ``x * s1 + proj_2'(LKA(GELU(proj_1'(x))))`` with ``s1 = 1 + ls1 * a1`` and the shift of
    ``ls1 * BN1`` in the bias of ``proj_2'``; the MLP branch as ``x + fc2'(GELU(dw(fc1'(x))))``.
    """

    def __init__(self, block: Block) -> None:
        super().__init__()
        a1, b1 = (t.double() for t in _bn_affine(block.norm1))
        a2, b2 = (t.double() for t in _bn_affine(block.norm2))
        ls1 = block.layer_scale_1.detach().double()
        ls2 = block.layer_scale_2.detach().double()
        attn, mlp = block.attn, block.mlp
        self.proj_1 = _fold_input_affine(attn.proj_1, a1, b1)
        self.act = nn.GELU()
        self.lka = copy.deepcopy(attn.spatial_gating_unit)
        self.proj_2 = _scale_output(attn.proj_2, ls1, ls1 * b1)
        self.register_buffer("residual_scale", (1.0 + ls1 * a1).float().view(1, -1, 1, 1))
        self.fc1 = _fold_input_affine(mlp.fc1, a2, b2)
        self.dwconv = copy.deepcopy(mlp.dwconv.dwconv)
        self.fc2 = _scale_output(mlp.fc2, ls2, torch.zeros_like(ls2))

        self._cast = CastCache()
        #: Use the oneDNN-fused CPU path (set by :func:`optimize`; off for export graphs).
        self.fused = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            self.fused
            and not torch.compiler.is_compiling()  # inductor fuses by itself
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.bfloat16)
            and x.is_contiguous(memory_format=torch.channels_last)
        ):
            return self._forward_fused(x)
        attn = self.proj_2(self.lka(self.act(self.proj_1(x))))
        x = torch.addcmul(attn, x, self.residual_scale)
        return x + self.fc2(self.act(self.dwconv(self.fc1(x))))

    def _forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        """The same block on CPU in NHWC with GELU, gating and residual fused into oneDNN."""
        dtype, w = x.dtype, self._cast
        lka = self.lka
        xt = x.permute(0, 2, 3, 1)  # (B, H, W, C), contiguous
        u = linear_nhwc(
            xt, w(self.proj_1.weight, dtype).flatten(1), w(self.proj_1.bias, dtype), "gelu"
        )
        a = lka.conv_spatial(lka.conv0(u.permute(0, 3, 1, 2)))
        conv1 = lka.conv1
        gated = linear_nhwc(
            a.permute(0, 2, 3, 1),
            w(conv1.weight, dtype).flatten(1),
            w(conv1.bias, dtype),
            binary="mul",
            other=u,
        )
        attn = linear_nhwc(
            gated, w(self.proj_2.weight, dtype).flatten(1), w(self.proj_2.bias, dtype)
        )
        xt = attn.addcmul_(xt, w(self.residual_scale, dtype).view(-1))
        hidden = self.fc1.weight.shape[0]
        band = max(1, MLP_BAND_BYTES // (xt.shape[2] * hidden * xt.element_size()))
        if band >= xt.shape[1]:
            return self._mlp(xt, 0, xt.shape[1]).permute(0, 3, 1, 2)
        out = torch.empty_like(xt)
        for top in range(0, xt.shape[1], band):
            out[:, top : top + band] = self._mlp(xt, top, min(top + band, xt.shape[1]))
        return out.permute(0, 3, 1, 2)

    def _mlp(self, xt: torch.Tensor, top: int, bottom: int) -> torch.Tensor:
        """``x + fc2(GELU(dw(fc1(x))))`` for rows ``[top, bottom)`` of a (B, H, W, C) map.

        fc1 runs on one extra row above and below (the 3x3 depthwise conv's reach); at the
        image border the conv's own zero padding stands in for the missing row, so every band
        is exact and the hidden map of the band stays in cache.
        """
        dtype, w = xt.dtype, self._cast
        start, stop = max(top - 1, 0), min(bottom + 1, xt.shape[1])
        h = linear_nhwc(
            xt[:, start:stop], w(self.fc1.weight, dtype).flatten(1), w(self.fc1.bias, dtype)
        )
        dw = self.dwconv
        h = depthwise_gelu(h.permute(0, 3, 1, 2), dw, w(dw.weight, dtype), w(dw.bias, dtype))
        h = h[:, :, top - start : top - start + bottom - top].permute(0, 2, 3, 1)
        return linear_nhwc(
            h,
            w(self.fc2.weight, dtype).flatten(1),
            w(self.fc2.bias, dtype),
            binary="add",
            other=xt[:, top:bottom],
        )


class FastStage(nn.Module):
    """A VAN :class:`Stage` with a folded patch embedding; LayerNorm on the NHWC view."""

    def __init__(self, stage: Stage) -> None:
        super().__init__()
        embed: OverlapPatchEmbed = stage.patch_embed
        self.patch_embed = fold_batchnorm(embed.proj, embed.norm)
        self.blocks = nn.Sequential(*(FoldedBlock(b) for b in stage.blocks))
        self.norm = copy.deepcopy(stage.norm)
        for block in self.blocks:
            _replace_children(block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.patch_embed(x))
        # (B, H, W, C) view: contiguous in channels_last, so LayerNorm keeps the layout.
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _fold_conv_norm_act(module: ConvNormAct) -> nn.Module:
    bn = getattr(module, "bn", None)
    if bn is None:
        return module
    conv = fold_batchnorm(module.conv, bn)
    layers: list[nn.Module] = [NCHWConv(conv) if conv.kernel_size != (1, 1) else conv]
    if hasattr(module, "activate"):
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _replace_children(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, Stage):
            setattr(module, name, FastStage(child))
        elif isinstance(child, UPerHead):
            _replace_children(child)  # fold its convs, then wrap it (the wrapper holds it)
            setattr(module, name, FastUPerHead(child))
        elif isinstance(child, LightHamHead):
            setattr(module, name, FastLightHamHead(child))
            _replace_children(getattr(module, name))
        elif isinstance(child, ConvNormAct):
            setattr(module, name, _fold_conv_norm_act(child))
            _replace_children(getattr(module, name))
        elif is_pointwise(child):
            setattr(module, name, PointwiseConv(child))
        elif isinstance(child, nn.Conv2d) and child.groups == 1 and child.kernel_size != (1, 1):
            if not isinstance(module, (FastStage, NCHWConv)):  # head convs; not patch embeds
                setattr(module, name, NCHWConv(child))
        else:
            _replace_children(child)


def fold_model(model: Segmentor) -> Segmentor:
    """A deep copy of ``model`` in eval mode with every foldable norm and layer scale folded.

    The copy has the same forward and returns the same logits up to float rounding. It is for
    inference only: training it would train a different parameterisation.
    """
    folded = copy.deepcopy(model).eval()
    folded.auxiliary_head = None  # training only
    _replace_children(folded)
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded


#: Dense 3x3 head convs with at least this many input and output channels run Winograd
#: (UperNet's 512-wide convs, HamNet's squeeze/align); narrower ones were not measured faster.
WINOGRAD_MIN_CHANNELS = 512


def _use_cpu_kernels(model: nn.Module, precision: str, channels_last: bool) -> None:
    """The CPU levers: oneDNN-fused VAN blocks and phase-split dilated convs (channels_last),
    and Winograd for the wide dense 3x3 head convs (already NCHW, :class:`NCHWConv`).

    Winograd is F(4x4, 3x3) in fp32 (4x fewer multiplications, ~3e-6 relative error) and
    F(2x2, 3x3) under bf16/fp16 autocast, where F(4x4)'s output transform would amplify the
    low-precision rounding. Small calls fall back to ``F.conv2d`` (``winograd_pays_off``).
    """
    if channels_last:
        for block in model.modules():
            if isinstance(block, FoldedBlock):
                block.fused = True
                lka = block.lka
                lka.conv_spatial = PhaseDilatedConv(lka.conv_spatial).to(
                    memory_format=torch.channels_last
                )
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

    def __init__(self, model: Segmentor, precision: Precision, channels_last: bool) -> None:
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
        self, model: Segmentor, precision: Precision, channels_last: bool, compile: bool = False
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


def optimize(
    model: nn.Module,
    precision: Precision = "fp32",
    compile: bool = False,
    channels_last: bool = True,
) -> nn.Module:
    """A faster eval-mode copy of a :class:`Segmentor` with the same call.

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
    if not isinstance(model, Segmentor):
        raise ConfigError(
            f"optimize() takes a vanseg Segmentor, got {type(model).__name__}; build or load "
            "one with vanseg.build_model / vanseg.load_model"
        )
    _check_device(model, precision)
    return FastSegmentor(fold_model(model), precision, channels_last, compile).eval()


class AutocastSegmentor(nn.Module):
    """The unchanged model run under autocast (``inference.fast=false`` with bf16/fp16)."""

    def __init__(self, model: Segmentor, precision: Precision) -> None:
        super().__init__()
        self.model = model
        self.precision = precision

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.autocast(images.device.type, dtype=PRECISIONS[self.precision]):
            logits = self.model.decode_head(self.model.extract(images))
        return resize(logits.float(), images.shape[2:])


def for_inference(model: Segmentor, precision: str = "fp32", fast: bool = False) -> nn.Module:
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
