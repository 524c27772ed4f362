"""The part both Ham heads share: squeeze conv -> Hamburger (NMF) -> align conv.

Light-Ham uses 1x1 convs on the concatenated stages 2-4, HamNet 3x3 convs on the last stage
(docs/reference.md §5). The module names ``squeeze``, ``hamburger`` and ``align`` are those of
the original state dicts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vanseg.models.heads.base import DecodeHead
from vanseg.models.layers.conv import ConvNormAct
from vanseg.models.layers.matrix_decomposition import Hamburger

__all__ = ["HamDecodeHead"]


class HamDecodeHead(DecodeHead):
    """`DecodeHead` with the squeeze / Hamburger / align block of the Ham heads.

    Args:
        in_channels: Channels of every backbone stage.
        num_classes: Output classes.
        ham_channels: Width of the squeeze conv and the Hamburger.
        channels: Width of ``align`` and of the classifier input.
        in_index: Stage(s) read; the squeeze conv takes their channels summed.
        kernel_size: Kernel of the squeeze and align convs.
        rank: NMF rank (64 in every published Ham head but Light-Ham-D256's 16).
        dropout: Dropout2d before the classifier.
        train_steps, eval_steps, one_step_grad, eval_seed: see :class:`NMF2D` (the defaults
            are the original's: 6 and 7 steps, gradient through every step, fresh bases).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        ham_channels: int,
        channels: int,
        in_index: int | Sequence[int],
        kernel_size: int,
        rank: int = 64,
        dropout: float = 0.1,
        train_steps: int = 6,
        eval_steps: int = 7,
        one_step_grad: bool = False,
        eval_seed: int | None = None,
    ) -> None:
        super().__init__(in_channels, num_classes, channels, in_index, dropout)
        selected = self.in_channels
        squeeze_in = selected if isinstance(selected, int) else sum(selected)
        self.squeeze = ConvNormAct(squeeze_in, ham_channels, kernel_size, norm="gn")
        self.hamburger = Hamburger(
            ham_channels,
            rank=rank,
            train_steps=train_steps,
            eval_steps=eval_steps,
            one_step_grad=one_step_grad,
            eval_seed=eval_seed,
        )
        self.align = ConvNormAct(ham_channels, channels, kernel_size, norm="gn")

    def ham(self, x: torch.Tensor) -> torch.Tensor:
        """squeeze -> Hamburger -> align: (B, C_in, h, w) -> (B, channels, h, w)."""
        return self.align(self.hamburger(self.squeeze(x)))
