"""The original's segmentation metric (mIoU, mAcc, aAcc) as a torchmetrics ``JaccardIndex``.

mmseg 0.21 (``mmseg/core/evaluation/metrics.py``; docs/reference.md §9) sums per-class
intersection, union, prediction and label areas over the whole dataset, then reports
``IoU_c = I_c / U_c`` and ``Acc_c = I_c / Label_c`` (NaN where the denominator is 0),
``mIoU = nanmean(IoU)``, ``mAcc = nanmean(Acc)`` and ``aAcc = sum I / sum Label``. A class
absent from both label and prediction is therefore left out of mIoU; a class that is only
predicted counts with IoU 0. Pixels labelled ``ignore_index`` leave both label and prediction.

All these areas follow from one dataset-level confusion matrix, which is the metric state: an
int64 ``(K, K)`` matrix (rows = label, columns = prediction) summed across batches and DDP
ranks, so the result is exact and independent of the number of processes.

Why :class:`SegmentationMetrics` subclasses ``MulticlassJaccardIndex``: that is the metric the
project names for mIoU, and its ``average="macro"`` value with ``ignore_index=255`` equals
mmseg's mIoU (docs/pitfalls.md A1), so users looking for it find it here, with its state
(``confmat``, int64, ``dist_reduce_fx="sum"``), ``reset``/``forward``/DDP sync and
``isinstance`` checks. It overrides what mmseg needs, and ``plot`` because of it:

* ``update``: ``torch.bincount`` without weights, which is deterministic on every device and
  needs memory linear in the pixel count. The stock update goes through torchmetrics'
  ``_bincount``, which under deterministic mode switches to a ``pixels x K^2`` mesh
  (docs/pitfalls.md A6). It also checks the value range itself (see :func:`confusion_matrix`).
* ``compute``: mmseg's dict (per-class IoU/Acc with NaN, mIoU, mAcc, aAcc), where the stock
  one returns a single tensor and fills absent classes with ``zero_division`` (0) in
  ``average="none"`` (docs/pitfalls.md A2). ``plot`` draws mIoU/mAcc/aAcc of that dict.

Where the stock mIoU differs: it computes in float32 (ours in float64, so they agree to float32
precision), and an ``ignore_index`` *inside* ``0..K-1`` gets weight 0 in the stock macro mean,
whereas here (as in mmseg) only the pixels labelled with it are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torchmetrics.classification import MulticlassJaccardIndex

from vanseg.data.classes import IGNORE_INDEX

if TYPE_CHECKING:  # the aliases torchmetrics' own plot() methods are annotated with
    from torchmetrics.utilities.plot import _AX_TYPE, _PLOT_OUT_TYPE

__all__ = ["SegmentationMetrics", "confusion_matrix", "metrics_from_confusion", "round_results"]


def confusion_matrix(
    preds: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    ignore_index: int | None = IGNORE_INDEX,
    validate: bool = True,
) -> torch.Tensor:
    """Confusion matrix ``(K, K)`` int64 of class-index maps; rows are labels, columns predictions.

    Same layout as ``torchmetrics.functional.classification.multiclass_confusion_matrix``, but
    always counted with a weightless ``torch.bincount`` (deterministic, linear memory).

    Args:
        preds: Predicted class indices, any shape, values in ``0..K-1``.
        target: Labels of the same shape, values in ``0..K-1`` or ``ignore_index``.
        num_classes: K.
        ignore_index: Label value whose pixels are dropped from both maps.
        validate: Check that every kept label and prediction lies in ``0..K-1`` (costs a
            device-to-host sync per call on GPU). Without it, bad values are miscounted.

    Raises:
        ValueError: Shapes differ, or (with ``validate``) a label or prediction lies outside the
            class range (a label-mapping bug that would otherwise be silently miscounted).
    """
    if preds.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(preds.shape)} != label {tuple(target.shape)}")
    preds, target = preds.reshape(-1).long(), target.reshape(-1).long()
    if ignore_index is not None:
        valid = target != ignore_index
        preds, target = preds[valid], target[valid]
    if validate:
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


class SegmentationMetrics(MulticlassJaccardIndex):
    """Dataset-level mIoU / mAcc / aAcc exactly as the original computes them.

    A ``MulticlassJaccardIndex(num_classes, average="macro", ignore_index=...)`` whose state is
    the stock ``confmat`` and whose ``update`` and ``compute`` follow mmseg (module docstring).

    ``update(preds, target)`` accepts class indices ``(B, H, W)`` or scores ``(B, K, H, W)``
    (logits or probabilities; argmax over K) with labels ``(B, H, W)`` at the same resolution.
    ``compute()`` returns the dict of :func:`metrics_from_confusion`, not a tensor. Under DDP the
    confusion matrix is summed over processes, so ``compute()`` is a collective: call it on
    every rank (docs/pitfalls.md A5), and make sure no sample is evaluated twice
    (docs/pitfalls.md B1).

    Because ``compute()`` returns a dict, log its entries rather than the metric object, e.g.
    ``res = metric.compute(); self.log("val/mIoU", res["mIoU"]); metric.reset()`` at epoch end.

    Args:
        num_classes: K (at least 1; the stock class wants 2).
        ignore_index: Label value left out of every count (255 for ADE20K); ``None`` for none.
        validate_args: Check label and prediction ranges on every update (as the stock
            ``validate_args``); ``False`` skips that check and its GPU sync.
        kwargs: Passed to ``torchmetrics.Metric`` (``sync_on_compute``, ``compute_on_cpu``...).
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = IGNORE_INDEX,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        # The stock argument check rejects num_classes == 1, which this metric has always taken.
        super().__init__(
            num_classes=num_classes,
            average="macro",
            ignore_index=ignore_index,
            validate_args=False,
            **kwargs,
        )
        self.validate_args = validate_args

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``preds`` (B, H, W) indices or (B, K, H, W) scores, ``target`` (B, H, W)."""
        if preds.is_floating_point():
            if preds.dim() != target.dim() + 1 or preds.shape[1] != self.num_classes:
                raise ValueError(
                    f"score maps must be (B, {self.num_classes}, H, W) for labels (B, H, W); "
                    f"got {tuple(preds.shape)} and {tuple(target.shape)}"
                )
            preds = preds.argmax(dim=1)
        self.confmat += confusion_matrix(
            preds, target, self.num_classes, self.ignore_index, validate=self.validate_args
        )

    def compute(self) -> dict[str, Any]:  # type: ignore[override]
        """See :func:`metrics_from_confusion`."""
        return metrics_from_confusion(self.confmat)

    def plot(  # type: ignore[override]
        self,
        val: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
        ax: _AX_TYPE | None = None,
    ) -> _PLOT_OUT_TYPE:
        """Plot mIoU, mAcc and aAcc of one ``compute()`` result, or of a sequence of them.

        Without ``val`` it calls ``compute()``. Needs matplotlib, like every torchmetrics plot.
        """
        val = val if val is not None else self.compute()

        def summary(res: dict[str, Any]) -> dict[str, torch.Tensor]:
            return {key: torch.tensor(float(res[key])) for key in ("mIoU", "mAcc", "aAcc")}

        if isinstance(val, dict):
            return self._plot(summary(val), ax)
        return self._plot([summary(res) for res in val], ax)
