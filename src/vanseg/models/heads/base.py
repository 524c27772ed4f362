"""Shared decode-head pieces: input selection and the dropout + 1x1 classifier."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DecodeHead", "resize"]


def resize(x: torch.Tensor, size: Sequence[int], mode: str = "bilinear") -> torch.Tensor:
    """``F.interpolate`` to ``size`` with ``align_corners=False`` for bilinear (as mmseg)."""
    align = False if mode == "bilinear" else None
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=align)


class DecodeHead(nn.Module):
    """Base of all heads: picks its inputs and classifies with Dropout2d + 1x1 conv.

    Subclasses build their layers, then call :meth:`classify` on their last feature map.
    ``conv_seg`` is created first so that it comes first in the state dict, as in mmseg.

    Args:
        in_channels: Channels of every backbone (or neck) level; ``in_index`` selects.
        num_classes: Output classes (K).
        channels: Width of the feature map fed to the classifier.
        in_index: Index or indices of the levels the head reads.
        dropout: Channel-dropout probability before the classifier.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int,
        in_index: int | Sequence[int],
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_index = in_index
        self.num_classes = num_classes
        self.channels = channels
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        nn.init.normal_(self.conv_seg.weight, 0.0, 0.01)
        nn.init.zeros_(self.conv_seg.bias)
        in_channels = list(in_channels)
        if isinstance(in_index, int):
            self.in_channels: int | list[int] = in_channels[in_index]
        else:
            self.in_channels = [in_channels[i] for i in in_index]

    def select(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        """The level(s) named by ``in_index``."""
        if isinstance(self.in_index, int):
            return feats[self.in_index]
        return [feats[i] for i in self.in_index]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout2d, then the 1x1 classifier: (B, channels, h, w) -> (B, K, h, w)."""
        return self.conv_seg(self.dropout(x))
