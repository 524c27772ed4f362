"""Optimizer parameter groups with mmcv's weight-decay exemption rule.

The published recipes exempt from weight decay every parameter whose full name contains
``norm`` (mmcv ``paramwise_cfg.custom_keys={'norm': dict(decay_mult=0.)}``, a substring
match). In vanseg names that selects exactly the backbone BatchNorm/LayerNorm parameters,
as in the original; head GroupNorm/BatchNorm (``gn``/``bn``), biases and layer scales keep
weight decay (docs/reference.md §3.10). ``exempt="norm_bias_scale"`` is the cleaner alternative.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["param_groups", "build_optimizer", "optimizer_options", "OPTIMIZER_IMPLS"]

EXEMPT_POLICIES = ("original", "norm_bias_scale", "none")
#: Optimizer kernels: one fused kernel, one multi-tensor kernel per group, or a Python loop.
OPTIMIZER_IMPLS = ("auto", "fused", "foreach", "for_loop")
FUSED_DEVICES = ("cuda", "cpu")


def _exempt(name: str, param: torch.Tensor, policy: str, keys: Sequence[str]) -> bool:
    if policy == "none":
        return False
    if policy == "original":
        return any(k in name for k in keys)
    # norm_bias_scale: every norm weight/bias, every bias, every layer scale
    return param.ndim <= 1


def param_groups(
    model: nn.Module,
    exempt: str = "original",
    no_decay_keys: Sequence[str] = ("norm",),
) -> list[dict]:
    """Two groups: parameters with the optimizer's weight decay, and exempt ones with 0.

    Args:
        model: Module whose trainable parameters are grouped (names as in its state dict).
        exempt: ``"original"`` (substring rule on ``no_decay_keys``), ``"norm_bias_scale"``
            (all 1-d parameters: norms, biases, layer scales) or ``"none"``.
        no_decay_keys: Substrings for the ``"original"`` rule.
    """
    if exempt not in EXEMPT_POLICIES:
        raise ValueError(
            f"optimizer exempt policy must be one of {EXEMPT_POLICIES}, got {exempt!r}"
        )
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if _exempt(name, param, exempt, no_decay_keys) else decay).append(param)
    groups: list[dict] = [{"params": decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _accepts(optimizer: Callable[..., torch.optim.Optimizer], name: str) -> bool:
    target = getattr(optimizer, "func", optimizer)  # a functools.partial from Hydra
    try:
        return name in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


def optimizer_options(
    impl: str,
    model: nn.Module,
    optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.AdamW,
) -> dict[str, bool]:
    """Keyword arguments selecting the optimizer kernel (``fused``/``foreach``).

    ``auto`` picks the fused kernel when the optimizer has one and every parameter is on a
    device that has it (CUDA, CPU), otherwise torch's own default. The update is the same
    AdamW formula in every kernel; only the float rounding order may differ.
    """
    if impl not in OPTIMIZER_IMPLS:
        raise ValueError(f"optimizer impl must be one of {OPTIMIZER_IMPLS}, got {impl!r}")
    devices = {p.device.type for p in model.parameters()}
    if impl == "auto":
        fused = _accepts(optimizer, "fused") and devices <= set(FUSED_DEVICES)
        return {"fused": True} if fused else {}
    for name in ("fused", "foreach"):
        if impl == name and not _accepts(optimizer, name):
            raise ValueError(f"module.optimizer_impl={name}: {optimizer} has no {name} kernel")
    if impl == "fused":
        return {"fused": True}
    if impl == "foreach":
        return {"foreach": True}
    return {"foreach": False} if _accepts(optimizer, "foreach") else {}


def build_optimizer(
    model: nn.Module,
    optimizer: Callable[..., torch.optim.Optimizer],
    exempt: str = "original",
    no_decay_keys: Sequence[str] = ("norm",),
    impl: str = "for_loop",
) -> torch.optim.Optimizer:
    """``optimizer(param_groups(...), **optimizer_options(impl))``.

    ``optimizer`` is a partial with lr, weight decay, etc.; ``impl`` picks the kernel.
    """
    options = optimizer_options(impl, model, optimizer)
    return optimizer(param_groups(model, exempt, no_decay_keys), **options)
