"""Inference-only layers of the fast path (:func:`vanseg.optimize`); none of them trains.

* :class:`PointwiseConv`: a dense 1x1 conv as a matrix product in either memory layout.
* :class:`NCHWConv`: a dense k x k conv run on an NCHW-contiguous input (on CPU, oneDNN's
  dense 3x3 convolutions are slower in channels_last; measured by ``vanseg.tools.benchmark``).
* :class:`PhaseDilatedConv`: a dilated depthwise conv as an undilated one on the d x d phases.
* :class:`RecycledResize`: the final logits resize written into a buffer that is reused once
  the caller has dropped every reference to the previous result.
* :class:`CastCache`: frozen weights cast once per dtype for the fused ops.
* :func:`linear_nhwc`, :func:`depthwise_gelu`: oneDNN's fused linear / conv + pointwise ops
  (those inductor uses), for the VAN blocks on CPU
  (``vanseg.models.backbones.van_fused.FoldedBlock``).

The model-specific twins that use these layers (folded VAN blocks, the fast Light-Ham and
UperNet heads) live beside their models and are built by the models' ``fuse()`` methods.
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import nn

from vanseg.accel import kernels

__all__ = [
    "CastCache",
    "NCHWConv",
    "PhaseDilatedConv",
    "PointwiseConv",
    "RecycledResize",
    "depthwise_gelu",
    "is_pointwise",
    "linear_nhwc",
]


def is_pointwise(conv: nn.Module) -> bool:
    """True for a plain dense 1x1 ``nn.Conv2d`` with stride 1 and no padding."""
    return (
        type(conv) is nn.Conv2d
        and conv.kernel_size == (1, 1)
        and conv.stride == (1, 1)
        and conv.padding == (0, 0)
        and conv.groups == 1
    )


def _frozen(t: torch.Tensor | None) -> nn.Parameter | None:
    return None if t is None else nn.Parameter(t.detach().clone(), requires_grad=False)


class PointwiseConv(nn.Module):
    """A dense 1x1 conv computed as a matrix product.

    channels_last input: ``F.linear`` on the (B, H, W, C) view; NCHW input: ``W @ x`` on the
    (B, C, H*W) view. oneDNN's 1x1 convolution runs well below the matrix-product rate on CPU.
    """

    def __init__(self, conv: nn.Conv2d | None = None, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        if conv is not None:
            weight = conv.weight
        if weight is None:
            raise ValueError("PointwiseConv needs a conv or a (O, C, 1, 1) weight")
        self.weight = _frozen(weight)
        self.bias = _frozen(conv.bias if conv is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.flatten(1)  # (O, C)
        if x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1:
            return F.linear(x.permute(0, 2, 3, 1), weight, self.bias).permute(0, 3, 1, 2)
        b, _, h, w = x.shape
        out = torch.matmul(weight.to(x.dtype), x.flatten(2))  # (B, O, H*W)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype).view(1, -1, 1)
        return out.view(b, -1, h, w)


class NCHWConv(nn.Module):
    """A conv that always runs on an NCHW-contiguous input (and returns NCHW)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.contiguous())


class RecycledResize(nn.Module):
    """Bilinear resize (``align_corners=False``) into a buffer reused across calls.

    A fresh output of the final resize (e.g. 150 x 512 x 512 floats, 157 MB) is a new
    memory mapping on every call, and touching its pages for the first time costs as much as
    the resize. This module keeps the last output's storage and writes the next result into it
    only when nothing else refers to that storage any more (the caller has dropped the
    previous result and every view of it); otherwise it allocates a new buffer. Results are
    therefore never overwritten while in use.
    """

    def __init__(self) -> None:
        super().__init__()
        self._buffer: torch.Tensor | None = None
        self._baseline = 0
        self._lock = threading.Lock()

    @staticmethod
    def _use_count(t: torch.Tensor) -> int:
        return torch._C._storage_Use_Count(t.untyped_storage()._cdata)

    def _take(self, like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        buf = self._buffer
        reusable = (
            buf is not None
            and buf.shape == shape
            and buf.dtype == like.dtype
            and buf.device == like.device
            and self._use_count(buf) == self._baseline
        )
        if not reusable:
            layout = (
                torch.channels_last
                if like.is_contiguous(memory_format=torch.channels_last)
                else torch.contiguous_format
            )
            buf = torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=layout)
            self._buffer = buf
            self._baseline = self._use_count(buf)
        return buf

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        size = (int(size[0]), int(size[1]))
        if x.requires_grad and torch.is_grad_enabled():  # out= cannot record autograd
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        with self._lock:
            out = self._take(x, (x.shape[0], x.shape[1], *size))
            torch._C._nn.upsample_bilinear2d(x, list(size), False, out=out)
            return out.detach()  # a new tensor on the same storage: it counts as a user


class CastCache:
    """Frozen weights cast once per dtype (the fused oneDNN ops do not autocast).

    Call it with parameters and buffers only (persistent tensors): the key is the tensor's
    identity, storage address and the target dtype.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int, torch.dtype], torch.Tensor] = {}

    def __call__(self, t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        if t is None or t.dtype == dtype:
            return t
        key = (id(t), t.data_ptr(), dtype)
        if key not in self._cache:
            self._cache[key] = t.detach().to(dtype)
        return self._cache[key]


def linear_nhwc(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    unary: str = "none",
    binary: str | None = None,
    other: torch.Tensor | None = None,
) -> torch.Tensor:
    """``linear`` on a (..., C) tensor with a ``unary`` or ``binary`` epilogue, fused in oneDNN.

    ``unary="gelu"`` gives ``gelu(x W^T + b)`` (exact erf GELU); ``binary="add"|"mul"`` gives
    ``(x W^T + b) op other``. Where this CPU has no fused kernel for the op in ``x``'s dtype
    (:mod:`~vanseg.accel.kernels`), the same is computed with the plain ops.
    """
    op = {None: "linear", "add": "linear+add", "mul": "linear*mul"}[binary]
    if binary is None and unary == "gelu":
        op = "linear+gelu"
    if kernels.has_fused(op, x.dtype):
        kernels.record("oneDNN " + op, x.dtype)
        if binary is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(x, other, weight, bias, binary)
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, unary, [], "none")
    kernels.record("plain " + op, x.dtype)
    out = F.linear(x, weight, bias)
    if op == "linear":
        return out
    if binary == "add":
        return out.add_(other)
    if binary == "mul":
        return out.mul_(other)
    return F.gelu(out)


def depthwise_gelu(x: torch.Tensor, conv: nn.Conv2d, weight: torch.Tensor, bias) -> torch.Tensor:
    """``gelu(conv(x))`` for a depthwise conv, fused in oneDNN where this CPU can (channels_last
    in and out), else with the plain ops."""
    if not kernels.has_fused("depthwise+gelu", x.dtype):
        kernels.record("plain depthwise+gelu", x.dtype)
        out = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        return F.gelu(out)
    kernels.record("oneDNN depthwise+gelu", x.dtype)
    return torch.ops.mkldnn._convolution_pointwise(
        x,
        weight,
        bias,
        list(conv.padding),
        list(conv.stride),
        list(conv.dilation),
        conv.groups,
        "gelu",
        [],
        "none",
    )


class PhaseDilatedConv(nn.Module):
    """A 'same'-padded dilated depthwise conv computed as an undilated one on d x d phases.

    With dilation ``d`` an output pixel only reads input pixels of its own phase
    ``(y mod d, x mod d)``, so the conv equals the undilated kernel applied to each of the
    ``d*d`` sub-images (zero padding included: the sub-images are zero-padded to a multiple of
    ``d``). oneDNN runs undilated depthwise kernels several times faster than dilated ones;
    the two re-arrangements cost less than the difference (VAN's 7x7 dilation-3 conv,
    ``python -m vanseg.tools.benchmark`` measures the whole model).
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        (k, k2), (d, d2) = conv.kernel_size, conv.dilation
        if not (
            k == k2
            and d == d2
            and conv.stride == (1, 1)
            and conv.groups == conv.in_channels == conv.out_channels
            and conv.padding == (d * (k - 1) // 2,) * 2
        ):
            raise ValueError(f"PhaseDilatedConv needs a 'same' dilated depthwise conv, got {conv}")
        self.dilation = d
        self.padding = (k - 1) // 2
        self.groups = conv.groups
        self.weight = _frozen(conv.weight)
        self.bias = _frozen(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernels.record("dilated depthwise conv on phases", x.dtype)
        b, c, h, w = x.shape
        d = self.dilation
        xt = x.permute(0, 2, 3, 1)  # (B, H, W, C); contiguous for a channels_last input
        ph, pw = -h % d, -w % d
        if ph or pw:
            xt = F.pad(xt, (0, 0, 0, pw, 0, ph))
        hp, wp = (h + ph) // d, (w + pw) // d
        phases = xt.reshape(b, hp, d, wp, d, c).permute(0, 2, 4, 1, 3, 5)
        phases = phases.reshape(b * d * d, hp, wp, c).permute(0, 3, 1, 2)  # NHWC memory
        y = F.conv2d(phases, self.weight, self.bias, padding=self.padding, groups=self.groups)
        y = y.permute(0, 2, 3, 1).reshape(b, d, d, hp, wp, c).permute(0, 3, 1, 4, 2, 5)
        y = y.reshape(b, hp * d, wp * d, c)
        if ph or pw:
            y = y[:, :h, :w].contiguous()
        return y.permute(0, 3, 1, 2)
