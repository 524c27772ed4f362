"""UperNet decode head (Xiao et al., arXiv:1807.10221; mmseg ``UPerHead``).

A pyramid-pooling module (scales 1, 2, 3, 6) on the last stage, FPN-style top-down fusion
with the other stages, all levels resized to 1/4 and fused by a 3x3 conv (docs/reference.md §5).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vanseg.models.heads.base import DecodeHead, resize
from vanseg.models.layers.conv import ConvNormAct

__all__ = ["UPerHead"]


class PyramidPooling(nn.ModuleList):
    """Adaptive average pooling at each scale, a 1x1 conv, and a resize back."""

    def __init__(self, scales: Sequence[int], in_channels: int, channels: int, norm: str):
        super().__init__(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvNormAct(in_channels, channels, 1, norm=norm))
            for s in scales
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [resize(branch(x), x.shape[2:]) for branch in self]


class UPerHead(DecodeHead):
    """UperNet head; returns (B, K, H/4, W/4) logits.

    Args:
        in_channels: Channels of every backbone stage.
        num_classes: Output classes.
        channels: Width of all convs (512).
        pool_scales: Output sizes of the pyramid pooling.
        in_index: Stages read (all four).
        norm: Norm of every conv (BatchNorm; SyncBatchNorm in multi-GPU training).
        dropout: Dropout2d before the classifier.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        in_index: Sequence[int] = (0, 1, 2, 3),
        norm: str = "bn",
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_channels, num_classes, channels, list(in_index), dropout)
        top = self.in_channels[-1]
        self.psp_modules = PyramidPooling(pool_scales, top, channels, norm)
        self.bottleneck = ConvNormAct(top + len(pool_scales) * channels, channels, 3, norm=norm)
        self.lateral_convs = nn.ModuleList(
            ConvNormAct(c, channels, 1, norm=norm) for c in self.in_channels[:-1]
        )
        self.fpn_convs = nn.ModuleList(
            ConvNormAct(channels, channels, 3, norm=norm) for _ in self.in_channels[:-1]
        )
        self.fpn_bottleneck = ConvNormAct(len(self.in_channels) * channels, channels, 3, norm=norm)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.classify(self.fpn_bottleneck(torch.cat(self.levels(feats), dim=1)))

    def levels(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The four fused pyramid levels, all at 1/4 size: the input of ``fpn_bottleneck``."""
        inputs = self.select(feats)
        top = inputs[-1]
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs, strict=False)]
        laterals.append(self.bottleneck(torch.cat([top, *self.psp_modules(top)], dim=1)))
        for i in range(len(laterals) - 1, 0, -1):  # top-down
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals, strict=False)]
        outs.append(laterals[-1])
        size = outs[0].shape[2:]
        return [outs[0]] + [resize(o, size) for o in outs[1:]]  # all at 1/4

    def fuse(self) -> nn.Module:
        """The inference twin: this head with its convs fused (BatchNorms folded), wrapped so
        that a Winograd ``fpn_bottleneck`` reads the four levels as parts.

        Changes this head in place (the twin holds it): call it on a copy, as
        ``vanseg.optimize`` does.
        """
        from vanseg.accel.fold import fuse_children
        from vanseg.models.heads.fused import FastUPerHead

        fuse_children(self)
        return FastUPerHead(self)
