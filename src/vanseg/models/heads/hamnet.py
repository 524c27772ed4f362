"""HamNet decode head on the output-stride-8 backbone (VAN-Segmentation ``HamHead``).

3x3 squeeze, Hamburger (NMF), 3x3 align, then a 3x3 conv over the concatenation of the
backbone's last stage and the aligned features, then the classifier (docs/reference.md §5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vanseg.models.heads.ham import HamDecodeHead
from vanseg.models.layers.conv import ConvNormAct

__all__ = ["HamHead"]


class HamHead(HamDecodeHead):
    """HamNet head; returns logits at the stride of stage ``in_index`` (1/8 with OS8).

    Args:
        in_channels: Channels of every backbone stage.
        num_classes: Output classes.
        channels: Width of every conv in the head (512).
        in_index: Stage read (the last).
        **ham_options: ``rank``, ``dropout`` and the NMF options of `HamDecodeHead`.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 512,
        in_index: int = 3,
        **ham_options: Any,
    ) -> None:
        super().__init__(
            in_channels, num_classes, channels, channels, in_index, kernel_size=3, **ham_options
        )
        self.conv_cat = ConvNormAct(self.in_channels + channels, channels, 3, norm="gn")

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.select(feats)
        return self.classify(self.conv_cat(torch.cat([x, self.ham(x)], dim=1)))
