"""Class imbalance options of the loss, as mmseg 0.x offers them: class weights and OHEM.

* ``module.class_weight=[w_0, ..., w_{K-1}]``: mmseg's ``CrossEntropyLoss(class_weight=...)``.
  Each pixel's cross-entropy is multiplied by the weight of its label (``F.cross_entropy(...,
  weight=w, reduction="none")``); the mean still divides by the pixel count (mmseg 0.x's
  ``weight_reduce_loss``), not by the sum of the weights as ``reduction="mean"`` of PyTorch does.
* ``module.sampler={type: ohem, thresh: 0.7, min_kept: 100000}``: mmseg's
  ``OHEMPixelSampler`` on the decode head. Only "hard" pixels count: those whose probability
  of the true class is below ``max(thresh, p_k)``, where ``p_k`` is the ``min_kept * B``-th
  smallest such probability (so at least ``min_kept`` pixels per image are kept when there are
  that many); with ``thresh: null`` the ``min_kept * B`` pixels of largest loss. The others get
  weight 0, and the mean still divides by the pixel count.

The CPU banded loss does not take them (`SegmentationModule` falls back to the materialised
loss and logs it once); ``module.compile=true`` compiles them (OHEM's threshold is read as a
Python number: one graph break).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["OhemSampler", "ohem_pixel_weights", "pixel_losses", "sampler_from_options"]


@dataclass(frozen=True)
class OhemSampler:
    """mmseg's ``OHEMPixelSampler(thresh, min_kept)``.

    Attributes:
        thresh: Probability below which a pixel is hard; None: keep the ``min_kept`` per
            image of largest loss instead.
        min_kept: Pixels per image kept at least.
    """

    thresh: float | None = 0.7
    min_kept: int = 100000


def sampler_from_options(options: Mapping[str, Any] | None) -> OhemSampler | None:
    """The sampler of ``module.sampler`` (``null`` or ``{type: ohem, thresh, min_kept}``)."""
    if options is None:
        return None
    options = dict(options)
    kind = options.pop("type", None)
    unknown = sorted(set(options) - {"thresh", "min_kept"})
    if kind != "ohem" or unknown:
        raise ValueError(
            f"module.sampler must be null or {{type: ohem, thresh: 0.7, min_kept: 100000}}, "
            f"got type={kind!r} and extra keys {unknown}"
        )
    thresh = options.get("thresh", 0.7)
    min_kept = options.get("min_kept", 100000)
    if (thresh is not None and not 0 < float(thresh) <= 1) or int(min_kept) < 0:
        raise ValueError(
            f"module.sampler: thresh must be in (0, 1] or null and min_kept >= 0, got "
            f"thresh={thresh}, min_kept={min_kept}"
        )
    return OhemSampler(None if thresh is None else float(thresh), int(min_kept))


@torch.no_grad()
def ohem_pixel_weights(
    logits: torch.Tensor,
    mask: torch.Tensor,
    sampler: OhemSampler,
    ignore_index: int,
    class_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, H, W) weights in ``logits``' dtype: 1 for the pixels OHEM keeps, 0 elsewhere.

    Args:
        logits: (B, K, H, W) logits at the label size.
        mask: (B, H, W) labels.
        class_weight: Used only without ``thresh``, to rank the pixels by their (weighted) loss.
    """
    batch_kept = sampler.min_kept * mask.shape[0]
    valid = mask != ignore_index
    weights = logits.new_zeros(mask.shape)
    kept = weights[valid]
    if sampler.thresh is not None:
        probs = F.softmax(logits, dim=1)
        labels = torch.where(valid, mask, 0).unsqueeze(1)
        true_probs = probs.gather(1, labels).squeeze(1)[valid]
        ordered = true_probs.sort().values
        min_threshold = ordered[min(batch_kept, ordered.numel() - 1)] if ordered.numel() else 0.0
        threshold = max(float(min_threshold), sampler.thresh)
        kept[true_probs < threshold] = 1.0
    else:
        losses = F.cross_entropy(
            logits, mask, weight=class_weight, ignore_index=ignore_index, reduction="none"
        )
        order = losses[valid].sort(descending=True).indices
        kept[order[:batch_kept]] = 1.0
    weights[valid] = kept
    return weights


def pixel_losses(
    logits: torch.Tensor,
    mask: torch.Tensor,
    ignore_index: int,
    class_weight: Sequence[float] | None,
    sampler: OhemSampler | None,
) -> torch.Tensor:
    """(B, H, W) per-pixel losses with class weights and the OHEM mask applied (0 if ignored)."""
    weight = None if class_weight is None else logits.new_tensor(class_weight)
    losses = F.cross_entropy(
        logits, mask, weight=weight, ignore_index=ignore_index, reduction="none"
    )
    if sampler is not None:
        losses = losses * ohem_pixel_weights(logits, mask, sampler, ignore_index, weight).float()
    return losses
