"""Folding: the arithmetic that merges eval norms into convs, and the driver that fuses a model.

A module that can be folded owns a ``fuse()`` method returning its inference twin (timm calls
the same idea ``reparameterize()``): ``ConvNormAct.fuse()``, the VAN ``Block``/``Stage``, the
Light-Ham and UperNet heads, the ``Segmentor``. :func:`fuse_module` asks a module for its
twin; a module without ``fuse()`` keeps its place and has its children fused, where a dense 1x1
conv becomes a :class:`~vanseg.accel.fast_layers.PointwiseConv` and a dense k x k conv an
:class:`~vanseg.accel.fast_layers.NCHWConv`. A twin is final: the driver does not walk into it,
so each ``fuse()`` fuses its own parts (with :func:`fuse_module` / :func:`fuse_children`).

``fuse()`` may reuse and change the module's submodules, so it is called on a copy:
:func:`fold_model` deep-copies the model first. This package imports nothing from
``vanseg.models``; the twins live beside their owners and import this module.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from vanseg.accel.fast_layers import NCHWConv, PointwiseConv, is_pointwise
from vanseg.errors import ConfigError

__all__ = [
    "bn_affine",
    "fold_batchnorm",
    "fold_input_affine",
    "fold_model",
    "fuse_children",
    "fuse_module",
    "scale_output",
]


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
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
    scale, shift = (t.double() for t in bn_affine(bn))
    fused = copy.deepcopy(conv)
    weight = conv.weight.detach().double() * scale.view(-1, 1, 1, 1)
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(scale)
    fused.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=False)
    fused.bias = nn.Parameter((bias * scale + shift).to(conv.weight.dtype), requires_grad=False)
    return fused


def fold_input_affine(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> nn.Conv2d:
    """A new 1x1 conv equal to ``conv(x * scale + shift)`` (exact: no padding involved)."""
    if conv.kernel_size != (1, 1) or conv.groups != 1:
        raise ConfigError(f"only a dense 1x1 conv can absorb an input affine, got {conv}")
    w = conv.weight.detach().double()
    fused = copy.deepcopy(conv)
    bias = conv.bias.detach().double() if conv.bias is not None else w.new_zeros(w.shape[0])
    fused.weight = nn.Parameter((w * scale.double().view(1, -1, 1, 1)).float())
    fused.bias = nn.Parameter((bias + w[:, :, 0, 0] @ shift.double()).float())
    return fused


def scale_output(conv: nn.Conv2d, scale: torch.Tensor, extra_bias: torch.Tensor) -> nn.Conv2d:
    """A new conv equal to ``conv(x) * scale + extra_bias``."""
    w = conv.weight.detach().double()
    s = scale.detach().double()
    fused = copy.deepcopy(conv)
    bias = conv.bias.detach().double() if conv.bias is not None else s.new_zeros(s.shape)
    fused.weight = nn.Parameter((w * s.view(-1, 1, 1, 1)).float())
    fused.bias = nn.Parameter((bias * s + extra_bias.double()).float())
    return fused


def fuse_module(module: nn.Module) -> nn.Module:
    """The inference twin of ``module``: its own ``fuse()`` (vanseg's models), else the generic
    rule.

    Generic rule: a dense 1x1 conv runs as a matrix product (:class:`PointwiseConv`), any other
    dense conv on an NCHW input (:class:`NCHWConv`; oneDNN's dense k x k convs are slower in
    channels_last on CPU); any other module stays and has its children fused in place.
    """
    fuse = getattr(module, "fuse", None)
    # Only vanseg's own fuse() methods: another library's method of that name (a timm block,
    # say) may mean something else.
    if callable(fuse) and getattr(fuse, "__module__", "").startswith("vanseg."):
        return fuse()
    if is_pointwise(module):
        return PointwiseConv(module)
    if isinstance(module, nn.Conv2d) and module.groups == 1 and module.kernel_size != (1, 1):
        return NCHWConv(module)
    fuse_children(module)
    return module


def fuse_children(module: nn.Module) -> None:
    """Replace every child of ``module``, in place, by its twin (:func:`fuse_module`)."""
    for name, child in module.named_children():
        twin = fuse_module(child)
        if twin is not child:
            setattr(module, name, twin)


def fold_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every foldable norm and layer scale folded.

    For a segmentor the copy has the same forward and returns the same logits up to float
    rounding (it drops the training-only auxiliary head). It is for inference only: training
    it would train a different parameterisation.
    """
    folded = fuse_module(copy.deepcopy(model).eval())
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded
