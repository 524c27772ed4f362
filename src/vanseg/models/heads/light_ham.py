"""Light-Ham decode head (Guo et al., SegNeXt, arXiv:2209.08575; VAN-Segmentation ``LightHamHead``).

Resizes stages 2-4 to the stage-2 size (1/8), concatenates them, squeezes with a 1x1 conv,
applies a Hamburger (NMF) block and a 1x1 ``align`` conv, then classifies (docs/reference.md §5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vanseg.models.heads.base import resize
from vanseg.models.heads.ham import HamDecodeHead

__all__ = ["LightHamHead"]


class LightHamHead(HamDecodeHead):
    """Light-Ham head; returns (B, K, H/8, W/8) logits for default strides.

    Args:
        in_channels: Channels of every backbone stage.
        num_classes: Output classes.
        ham_channels: Width of the squeeze conv and the Hamburger (480 for VAN-Tiny, 512
            otherwise, 256 for Light-Ham-D256).
        channels: Width of ``align`` and of the classifier input (512; 256 for D256).
        in_index: Stages read (2-4).
        **ham_options: ``rank`` (64; 16 for D256), ``dropout`` and the NMF options of
            `HamDecodeHead`.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        ham_channels: int = 512,
        channels: int = 512,
        in_index: Sequence[int] = (1, 2, 3),
        **ham_options: Any,
    ) -> None:
        super().__init__(
            in_channels, num_classes, ham_channels, channels, list(in_index), 1, **ham_options
        )

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        inputs = self.select(feats)
        size = inputs[0].shape[2:]
        x = torch.cat([resize(level, size) for level in inputs], dim=1)  # (B, sum C, H/8, W/8)
        return self.classify(self.ham(x))

    def fuse(self) -> nn.Module:
        """The inference twin: the squeeze conv applied per stage before the resize.

        :class:`~vanseg.models.heads.fused.FastLightHamHead`; it shares (and fuses) this
        head's Hamburger, align and classifier, so call it on a copy (``vanseg.optimize`` does).
        """
        from vanseg.accel.fold import fuse_children
        from vanseg.models.heads.fused import FastLightHamHead

        twin = FastLightHamHead(self)
        fuse_children(twin)
        return twin
