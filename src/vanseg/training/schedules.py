"""Iteration-based learning-rate schedules, as mmcv's ``PolyLrUpdaterHook`` computes them."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["poly_factor", "poly_with_warmup"]


def poly_factor(
    step: int,
    max_steps: int,
    power: float = 1.0,
    min_lr_ratio: float = 0.0,
    warmup_steps: int = 0,
    warmup_ratio: float = 1e-6,
) -> float:
    """Multiplier of the base lr at 0-based optimizer step ``step``.

    ``poly(t) = (1 - min) * (1 - t / T) ** power + min`` (relative to the base lr); during a
    linear warm-up (``t < warmup_steps``) it is multiplied by
    ``1 - (1 - t / warmup_steps) * (1 - warmup_ratio)``, as mmcv does (docs/reference.md §7).
    """
    progress = min(step, max_steps) / max_steps
    factor = (1.0 - min_lr_ratio) * (1.0 - progress) ** power + min_lr_ratio
    if step < warmup_steps:
        factor *= 1.0 - (1.0 - step / warmup_steps) * (1.0 - warmup_ratio)
    return factor


def poly_with_warmup(
    optimizer: torch.optim.Optimizer,
    max_steps: int,
    power: float = 1.0,
    min_lr_ratio: float = 0.0,
    warmup_steps: int = 0,
    warmup_ratio: float = 1e-6,
) -> LambdaLR:
    """A ``LambdaLR`` stepping :func:`poly_factor` once per optimizer step."""
    if max_steps <= 0:
        raise ValueError(f"poly schedule needs max_steps > 0, got {max_steps}")

    def factor(step: int) -> float:
        return poly_factor(step, max_steps, power, min_lr_ratio, warmup_steps, warmup_ratio)

    return LambdaLR(optimizer, factor)
