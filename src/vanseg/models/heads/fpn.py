"""Semantic FPN (Kirillov et al., arXiv:1901.02446): the FPN neck and mmseg's ``FPNHead``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vanseg.models.heads.base import DecodeHead, resize
from vanseg.models.layers.conv import ConvNormAct

__all__ = ["FPN", "FPNHead"]


class FPN(nn.Module):
    """Feature pyramid neck: 1x1 laterals, nearest top-down addition, 3x3 output convs.

    No norm and no activation (the convs have biases); Xavier-uniform init as mmseg's FPN.

    Args:
        in_channels: Channels of every backbone stage.
        out_channels: Channels of every output level (256).

    Attributes:
        out_channels: Channels of the outputs, one entry per level (what heads receive).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(
            ConvNormAct(c, out_channels, 1, norm=None, act=False) for c in in_channels
        )
        self.fpn_convs = nn.ModuleList(
            ConvNormAct(out_channels, out_channels, 3, norm=None, act=False) for _ in in_channels
        )
        self.out_channels: tuple[int, ...] = (out_channels,) * len(in_channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, feats, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize(
                laterals[i], laterals[i - 1].shape[2:], mode="nearest"
            )
        return [conv(lat) for conv, lat in zip(self.fpn_convs, laterals, strict=True)]


class Upsample2x(nn.Module):
    """Bilinear x2 upsampling (mmseg ``Upsample(scale_factor=2)``, output ``2 * size``).

    A scale factor rather than a size computed from ``x.shape``: the same pixels, but it
    stays dynamic in an exported graph and adds no shape arithmetic to traced MAC counts.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class FPNHead(DecodeHead):
    """Semantic FPN head: per-level conv towers upsampled to 1/4 and summed; (B, K, H/4, W/4).

    Args:
        in_channels: Channels of every neck level.
        num_classes: Output classes.
        feature_strides: Stride of each level (4, 8, 16, 32); level i gets
            ``max(1, log2(stride_i / stride_0))`` 3x3 convs, each followed by a x2 upsample.
        channels: Width of the towers (128).
        in_index: Levels read (all four).
        norm: Norm of the tower convs.
        dropout: Dropout2d before the classifier.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        feature_strides: Sequence[int] = (4, 8, 16, 32),
        channels: int = 128,
        in_index: Sequence[int] = (0, 1, 2, 3),
        norm: str = "bn",
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_channels, num_classes, channels, list(in_index), dropout)
        if len(feature_strides) != len(self.in_channels):
            raise ValueError(
                f"FPNHead got {len(feature_strides)} feature_strides for "
                f"{len(self.in_channels)} input levels"
            )
        self.scale_heads = nn.ModuleList()
        for i, stride in enumerate(feature_strides):
            length = max(1, int(math.log2(stride) - math.log2(feature_strides[0])))
            layers: list[nn.Module] = []
            for k in range(length):
                layers.append(
                    ConvNormAct(self.in_channels[i] if k == 0 else channels, channels, 3, norm)
                )
                if stride != feature_strides[0]:
                    layers.append(Upsample2x())
            self.scale_heads.append(nn.Sequential(*layers))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        inputs = self.select(feats)
        out = self.scale_heads[0](inputs[0])
        for head, x in zip(self.scale_heads[1:], inputs[1:], strict=True):
            out = out + resize(head(x), out.shape[2:])
        return self.classify(out)
