"""Optimizer parameter groups with mmcv's weight-decay exemption rule.

The published recipes exempt from weight decay every parameter whose full name contains
``norm`` (mmcv ``paramwise_cfg.custom_keys={'norm': dict(decay_mult=0.)}``, a substring
match). In vanseg names that selects exactly the backbone BatchNorm/LayerNorm parameters,
as in the original; head GroupNorm/BatchNorm (``gn``/``bn``), biases and layer scales keep
weight decay (docs/reference.md §3.10). ``exempt="norm_bias_scale"`` is the cleaner alternative.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["param_groups", "build_optimizer"]

EXEMPT_POLICIES = ("original", "norm_bias_scale", "none")


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


def build_optimizer(
    model: nn.Module,
    optimizer: Callable[..., torch.optim.Optimizer],
    exempt: str = "original",
    no_decay_keys: Sequence[str] = ("norm",),
) -> torch.optim.Optimizer:
    """``optimizer(param_groups(...))``; ``optimizer`` is a partial with lr, weight decay, etc."""
    return optimizer(param_groups(model, exempt, no_decay_keys))
