"""Encoder-decoder segmentor: backbone (+ neck) + decode head (+ auxiliary head)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from vanseg.models.heads.base import resize

__all__ = ["Segmentor"]

HeadFactory = Callable[..., nn.Module]


class Segmentor(nn.Module):
    """mmseg ``EncoderDecoder`` equivalent without losses or image metadata.

    Heads are passed as factories (``functools.partial`` or Hydra ``_partial_``) and built
    here with ``in_channels`` taken from the backbone (or the neck), so widths always match.
    Attribute names (``backbone``, ``neck``, ``decode_head``, ``auxiliary_head``) are those
    of mmseg, so original checkpoints keep their top-level prefixes.

    Args:
        backbone: Module returning a list of feature maps and exposing ``out_channels``.
        head: Factory ``head(in_channels=...)`` for the decode head.
        neck: Optional factory ``neck(in_channels=...)``; the head then reads its outputs.
        aux_head: Optional factory for an auxiliary head on the backbone features
            (training only).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: HeadFactory,
        neck: HeadFactory | None = None,
        aux_head: HeadFactory | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        channels: Sequence[int] = backbone.out_channels
        self.neck = neck(in_channels=channels) if neck is not None else None
        if self.neck is not None:
            channels = self.neck.out_channels
        self.decode_head = head(in_channels=channels)
        self.auxiliary_head = (
            aux_head(in_channels=backbone.out_channels) if aux_head is not None else None
        )

    @property
    def num_classes(self) -> int:
        return self.decode_head.num_classes

    def extract(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Backbone features, passed through the neck if there is one."""
        feats = self.backbone(images)
        return self.neck(feats) if self.neck is not None else feats

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> logits (B, K, H, W), bilinearly resized to the input size."""
        logits = self.decode_head(self.extract(images))
        return resize(logits, images.shape[2:])

    def forward_train(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decode and auxiliary logits at the heads' own resolutions.

        Returns ``{"logits": (B, K, h, w)}`` plus ``"aux_logits"`` when there is an
        auxiliary head. The loss resizes them to the label size, as mmseg does.
        """
        feats = self.backbone(images)
        head_feats = self.neck(feats) if self.neck is not None else feats
        out = {"logits": self.decode_head(head_feats)}
        if self.auxiliary_head is not None:
            out["aux_logits"] = self.auxiliary_head(feats)
        return out
