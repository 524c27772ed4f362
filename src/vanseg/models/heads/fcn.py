"""FCN auxiliary head (mmseg ``FCNHead`` with one conv, ``concat_input=False``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vanseg.models.heads.base import DecodeHead
from vanseg.models.layers.conv import ConvNormAct

__all__ = ["FCNHead"]


class FCNHead(DecodeHead):
    """``num_convs`` 3x3 conv-norm-ReLU blocks on one stage, then the classifier.

    Used as the auxiliary head of HamNet (GroupNorm) and UperNet (BatchNorm) on stage 3,
    with loss weight 0.4 (the weight lives in the training module).

    Args:
        in_channels: Channels of every backbone stage.
        num_classes: Output classes.
        channels: Width of the convs (256).
        num_convs: Number of 3x3 blocks.
        in_index: Stage read (stage 3 = index 2).
        norm: ``"gn"`` or ``"bn"``.
        dropout: Dropout2d before the classifier.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 256,
        num_convs: int = 1,
        in_index: int = 2,
        norm: str = "bn",
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_channels, num_classes, channels, in_index, dropout)
        self.convs = nn.Sequential(
            *(
                ConvNormAct(self.in_channels if i == 0 else channels, channels, 3, norm=norm)
                for i in range(num_convs)
            )
        )

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.classify(self.convs(self.select(feats)))
