"""The original's segmentation metric (mIoU, mAcc, aAcc) as a torchmetrics ``Metric``.

mmseg 0.21 (``mmseg/core/evaluation/metrics.py``; docs/reference.md §9) sums per-class
intersection, union, prediction and label areas over the whole dataset, then reports
``IoU_c = I_c / U_c`` and ``Acc_c = I_c / Label_c`` (NaN where the denominator is 0),
``mIoU = nanmean(IoU)``, ``mAcc = nanmean(Acc)`` and ``aAcc = sum I / sum Label``. A class
absent from both label and prediction is therefore left out of mIoU; a class that is only
predicted counts with IoU 0. Pixels labelled ``ignore_index`` leave both label and prediction.

All these areas follow from one dataset-level confusion matrix, which is the metric state: an
int64 ``(K, K)`` matrix (rows = label, columns = prediction) summed across batches and DDP
ranks, so the result is exact and independent of the number of processes. It is updated with
``torch.bincount`` without weights, which is deterministic on every device and needs memory
linear in the pixel count (torchmetrics' own helper switches to a ``pixels x K^2`` mesh under
deterministic mode, docs/pitfalls.md A6).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torchmetrics import Metric

from vanseg.data.classes import IGNORE_INDEX

__all__ = ["SegmentationMetrics", "confusion_matrix", "metrics_from_confusion", "round_results"]


def confusion_matrix(
    preds: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    ignore_index: int | None = IGNORE_INDEX,
) -> torch.Tensor:
    """Confusion matrix ``(K, K)`` int64 of class-index maps; rows are labels, columns predictions.

    Args:
        preds: Predicted class indices, any shape, values in ``0..K-1``.
        target: Labels of the same shape, values in ``0..K-1`` or ``ignore_index``.
        num_classes: K.
        ignore_index: Label value whose pixels are dropped from both maps.

    Raises:
        ValueError: Shapes differ, or a label or prediction lies outside the class range (a
            label-mapping bug that would otherwise be silently miscounted).
    """
    if preds.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(preds.shape)} != label {tuple(target.shape)}")
    preds, target = preds.reshape(-1).long(), target.reshape(-1).long()
    if ignore_index is not None:
        valid = target != ignore_index
        preds, target = preds[valid], target[valid]
    for name, values in (("label", target), ("prediction", preds)):
        if values.numel() and (values.min() < 0 or values.max() >= num_classes):
            bad = values[(values < 0) | (values >= num_classes)].unique()[:5].tolist()
            raise ValueError(
                f"{name} values {bad} are outside 0..{num_classes - 1}"
                + (f" and are not ignore_index={ignore_index}" if name == "label" else "")
            )
    counts = torch.bincount(target * num_classes + preds, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes)


def metrics_from_confusion(confmat: torch.Tensor) -> dict[str, Any]:
    """mmseg's summary and per-class numbers from a ``(K, K)`` confusion matrix.

    Returns:
        ``{"mIoU", "mAcc", "aAcc"}`` as Python floats (fractions, NaN if nothing was counted),
        ``"IoU"`` and ``"Acc"`` as float64 ``(K,)`` tensors with NaN where the denominator is 0,
        and ``"confmat"``, the matrix itself (int64, rows = label, columns = prediction).
    """
    confmat = confmat.to(torch.float64)
    intersect = confmat.diagonal()
    area_label = confmat.sum(dim=1)
    area_pred = confmat.sum(dim=0)
    union = area_label + area_pred - intersect
    # 0/0 gives NaN in float64, which is exactly mmseg's marker for "leave out of the mean".
    iou = intersect / union
    acc = intersect / area_label
    total = area_label.sum()
    a_acc = (intersect.sum() / total).item() if total > 0 else math.nan
    return {
        "mIoU": _nanmean(iou),
        "mAcc": _nanmean(acc),
        "aAcc": a_acc,
        "IoU": iou,
        "Acc": acc,
        "confmat": confmat.to(torch.int64),
    }


def _nanmean(values: torch.Tensor) -> float:
    finite = values[~values.isnan()]
    return finite.mean().item() if finite.numel() else math.nan


def round_results(results: dict[str, Any], decimals: int = 2) -> dict[str, Any]:
    """Percentages rounded as mmseg prints them (``np.round(100 * x, 2)``); NaN stays NaN.

    Returns ``{"mIoU", "mAcc", "aAcc"}`` as floats and ``"IoU"``, ``"Acc"`` as lists, all in
    percent. The unrounded fractions of :func:`metrics_from_confusion` remain the reference.
    """

    def pct(x: float) -> float:
        return x if math.isnan(x) else round(100.0 * x, decimals)

    out: dict[str, Any] = {key: pct(float(results[key])) for key in ("mIoU", "mAcc", "aAcc")}
    for key in ("IoU", "Acc"):
        out[key] = [pct(float(x)) for x in results[key].tolist()]
    return out


class SegmentationMetrics(Metric):
    """Dataset-level mIoU / mAcc / aAcc exactly as the original computes them.

    ``update(preds, target)`` accepts class indices ``(B, H, W)`` or scores ``(B, K, H, W)``
    (logits or probabilities; argmax over K) with labels ``(B, H, W)`` at the same resolution.
    ``compute()`` returns the dict of :func:`metrics_from_confusion`. Under DDP the confusion
    matrix is summed over processes, so ``compute()`` is a collective: call it on every rank
    (docs/pitfalls.md A5), and make sure no sample is evaluated twice (docs/pitfalls.md B1).

    Because ``compute()`` returns a dict, log its entries rather than the metric object, e.g.
    ``res = metric.compute(); self.log("val/mIoU", res["mIoU"]); metric.reset()`` at epoch end.

    Args:
        num_classes: K.
        ignore_index: Label value left out of every count (255 for ADE20K); ``None`` for none.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    confmat: torch.Tensor

    def __init__(
        self, num_classes: int, ignore_index: int | None = IGNORE_INDEX, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state(
            "confmat",
            default=torch.zeros(num_classes, num_classes, dtype=torch.int64),
            dist_reduce_fx="sum",
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``preds`` (B, H, W) indices or (B, K, H, W) scores, ``target`` (B, H, W)."""
        if preds.is_floating_point():
            if preds.dim() != target.dim() + 1 or preds.shape[1] != self.num_classes:
                raise ValueError(
                    f"score maps must be (B, {self.num_classes}, H, W) for labels (B, H, W); "
                    f"got {tuple(preds.shape)} and {tuple(target.shape)}"
                )
            preds = preds.argmax(dim=1)
        self.confmat += confusion_matrix(preds, target, self.num_classes, self.ignore_index)

    def compute(self) -> dict[str, Any]:
        """See :func:`metrics_from_confusion`."""
        return metrics_from_confusion(self.confmat)
