"""Inference twins of the Light-Ham and UperNet heads (built by their ``fuse()``; no training).

* :class:`FastLightHamHead`: Light-Ham with its squeeze conv applied per stage *before* the
  resize (a 1x1 conv and a bilinear resize are both linear and commute), which saves most of
  the squeeze's multiplications.
* :class:`FastUPerHead`: UperNet whose fusing 3x3 conv reads its four inputs as parts
  (Winograd) instead of a concatenated copy.

Only the heads' ``fuse()`` methods import this module, so importing a head does not load the
speed code (:mod:`vanseg.accel`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vanseg.accel.fast_layers import PointwiseConv
from vanseg.accel.winograd import WinogradConv2d
from vanseg.models.heads.light_ham import LightHamHead
from vanseg.models.heads.upernet import UPerHead

__all__ = ["FastLightHamHead", "FastUPerHead"]


class FastLightHamHead(nn.Module):
    """Light-Ham computing ``squeeze(cat(resize(x_i)))`` as ``sum_i resize(W_i x_i)``.

    The squeeze conv has no bias (GroupNorm follows), so splitting its weight by input stage
    and resizing each stage's product is the same linear map up to float rounding, at 1/16
    and 1/32 resolution instead of 1/8 for the deeper stages. It shares the head's modules.
    """

    def __init__(self, head: LightHamHead) -> None:
        super().__init__()
        conv = head.squeeze.conv
        if conv.kernel_size != (1, 1) or conv.bias is not None:
            raise ValueError(f"FastLightHamHead needs a bias-free 1x1 squeeze conv, got {conv}")
        self.in_index = list(head.in_index)
        widths = list(head.in_channels)
        self.squeeze_parts = nn.ModuleList(
            PointwiseConv(weight=w) for w in conv.weight.split(widths, dim=1)
        )
        self.squeeze_norm = head.squeeze.gn
        self.hamburger = head.hamburger
        self.align = head.align
        self.conv_seg = head.conv_seg
        self.num_classes = head.num_classes

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        inputs = [feats[i] for i in self.in_index]
        size = inputs[0].shape[2:]
        x = self.squeeze_parts[0](inputs[0])
        for part, level in zip(self.squeeze_parts[1:], inputs[1:], strict=True):
            y = part(level)
            x.add_(F.interpolate(y, size=tuple(size), mode="bilinear", align_corners=False))
        x = F.relu(self.squeeze_norm(x), inplace=True)
        return self.conv_seg(self.align(self.hamburger(x)))


class FastUPerHead(nn.Module):
    """UperNet whose fusing 3x3 conv reads the four levels without concatenating them.

    When :func:`vanseg.optimize` has given ``fpn_bottleneck`` a Winograd conv (CPU), the four
    1/4-size maps (4 x 512 channels: 134 MB at 512x512) go to it as parts; otherwise this is
    :class:`~vanseg.models.heads.upernet.UPerHead` itself (with its convs fused).
    """

    def __init__(self, head: UPerHead) -> None:
        super().__init__()
        self.head = head
        self.num_classes = head.num_classes

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        head = self.head
        first, *rest = head.fpn_bottleneck
        if not isinstance(getattr(first, "conv", None), WinogradConv2d):
            return head(feats)
        x = first.conv(head.levels(feats))
        for layer in rest:
            x = layer(x)
        return head.classify(x)
