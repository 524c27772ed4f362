"""Encoder-decoder segmentor: backbone (+ neck) + decode head (+ auxiliary head)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from vanseg.models.heads.base import resize

__all__ = ["Segmentor", "feature_channels"]

HeadFactory = Callable[..., nn.Module]


def feature_channels(backbone: nn.Module) -> tuple[int, ...]:
    """Channels of the backbone's outputs, read from its timm-style ``feature_info``."""
    info = getattr(backbone, "feature_info", None)
    if info is None:
        raise TypeError(
            f"{type(backbone).__name__} has no feature_info: a Segmentor backbone must describe "
            "its outputs like timm does (a list of dict(num_chs=..., reduction=...), or a timm "
            "model created with features_only=True). See docs/extending.md."
        )
    if hasattr(info, "channels"):  # timm FeatureInfo of a features_only model
        return tuple(info.channels())
    return tuple(int(stage["num_chs"]) for stage in info)


class Segmentor(nn.Module):
    """mmseg ``EncoderDecoder`` equivalent without losses or image metadata.

    Heads are passed as factories (``functools.partial`` or Hydra ``_partial_``) and built
    here with ``in_channels`` taken from the backbone (or the neck), so widths always match.
    Attribute names (``backbone``, ``neck``, ``decode_head``, ``auxiliary_head``) are those
    of mmseg, so original checkpoints keep their top-level prefixes.

    The backbone can be any module that returns a list of NCHW maps and describes them in a
    timm-style ``feature_info`` (a list of ``dict(num_chs=..., reduction=...)`` like
    :class:`~vanseg.models.VAN`, or the ``FeatureInfo`` of a timm ``features_only`` model).

    Args:
        backbone: Module returning a list of feature maps, with ``feature_info``.
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
        self.feature_channels = feature_channels(backbone)
        channels: Sequence[int] = self.feature_channels
        self.neck = neck(in_channels=channels) if neck is not None else None
        if self.neck is not None:
            channels = self.neck.out_channels
        self.decode_head = head(in_channels=channels)
        self.auxiliary_head = (
            aux_head(in_channels=self.feature_channels) if aux_head is not None else None
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

    def fuse(self) -> Segmentor:
        """This segmentor for inference: every part fused, the auxiliary head dropped.

        Works in place; ``vanseg.accel.fold.fold_model`` calls it on an eval-mode deep copy.
        The forward is unchanged: same logits up to float rounding.
        """
        from vanseg.accel.fold import fuse_children

        self.auxiliary_head = None  # training only
        fuse_children(self)
        return self
