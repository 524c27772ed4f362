"""SegmentationMetrics against the docs/reference.md §9 formulas, written independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from vanseg.evaluation.metrics import SegmentationMetrics, confusion_matrix, round_results

IGNORE = 255


def reference_metrics(
    preds: list[np.ndarray], labels: list[np.ndarray], num_classes: int
) -> dict[str, object]:
    """mmseg's ``intersect_and_union`` + ``total_area_to_metrics`` (docs/reference.md §9)."""
    total_i = np.zeros(num_classes)
    total_u = np.zeros(num_classes)
    total_label = np.zeros(num_classes)
    for pred, label in zip(preds, labels, strict=True):
        keep = label != IGNORE
        pred, label = pred[keep], label[keep]
        inter = pred[pred == label]
        area_i = np.histogram(inter, bins=num_classes, range=(0, num_classes - 1))[0]
        area_p = np.histogram(pred, bins=num_classes, range=(0, num_classes - 1))[0]
        area_l = np.histogram(label, bins=num_classes, range=(0, num_classes - 1))[0]
        total_i += area_i
        total_u += area_p + area_l - area_i
        total_label += area_l
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = total_i / total_u
        acc = total_i / total_label
    return {
        "IoU": iou,
        "Acc": acc,
        "mIoU": np.nanmean(iou),
        "mAcc": np.nanmean(acc),
        "aAcc": total_i.sum() / total_label.sum(),
    }


def random_batches(seed: int, num_classes: int = 7) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Images where class 5 is never present or predicted, 6 only predicted, 4 only labelled."""
    rng = np.random.default_rng(seed)
    preds, labels = [], []
    for height, width in ((17, 23), (31, 8), (5, 40)):
        label = rng.choice([0, 1, 2, 3, 4], size=(height, width))
        wrong = rng.choice([0, 1, 2, 3, 6], size=(height, width))
        pred = np.where(rng.random((height, width)) < 0.6, label, wrong)
        pred[pred == 4] = 0  # class 4 is never predicted
        label[rng.random((height, width)) < 0.15] = IGNORE
        preds.append(pred)
        labels.append(label)
    # Predictions of class 6 only on ignored pixels must not count.
    preds[0][labels[0] == IGNORE] = 6
    return preds, labels


def run_metric(preds: list[np.ndarray], labels: list[np.ndarray], num_classes: int):
    metric = SegmentationMetrics(num_classes, ignore_index=IGNORE)
    for pred, label in zip(preds, labels, strict=True):
        metric.update(torch.from_numpy(pred)[None], torch.from_numpy(label)[None])
    return metric.compute()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_reference(seed: int) -> None:
    preds, labels = random_batches(seed)
    ours = run_metric(preds, labels, 7)
    ref = reference_metrics(preds, labels, 7)
    np.testing.assert_allclose(ours["IoU"].numpy(), ref["IoU"], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(ours["Acc"].numpy(), ref["Acc"], rtol=1e-12, equal_nan=True)
    for key in ("mIoU", "mAcc", "aAcc"):
        assert ours[key] == pytest.approx(ref[key], rel=1e-12)
    # The scenario really contains the cases of interest.
    assert math.isnan(ours["IoU"][5]) and math.isnan(ours["Acc"][5])  # absent everywhere
    assert ours["IoU"][6] == 0 and math.isnan(ours["Acc"][6])  # predicted only
    assert ours["IoU"][4] == 0 and ours["Acc"][4] == 0  # labelled only


def test_hand_computed_example() -> None:
    # 3 classes; class 2 never appears; one pixel ignored (its prediction 1 is dropped).
    label = torch.tensor([[0, 0, 1, 255], [0, 1, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    res = run_metric([pred.numpy()], [label.numpy()], 3)
    # class 0: I=2, label=3, pred=3 -> IoU 2/4, Acc 2/3; class 1: I=3, label=4, pred=4 -> 3/5, 3/4
    np.testing.assert_allclose(res["IoU"][:2].numpy(), [0.5, 0.6])
    np.testing.assert_allclose(res["Acc"][:2].numpy(), [2 / 3, 0.75])
    assert math.isnan(res["IoU"][2]) and math.isnan(res["Acc"][2])
    assert res["mIoU"] == pytest.approx(0.55)
    assert res["mAcc"] == pytest.approx((2 / 3 + 0.75) / 2)
    assert res["aAcc"] == pytest.approx(5 / 7)
    assert res["confmat"].tolist() == [[2, 1, 0], [1, 3, 0], [0, 0, 0]]
    assert round_results(res)["mIoU"] == 55.0
    assert round_results(res)["Acc"][0] == 66.67


def test_equals_torchmetrics_macro_jaccard() -> None:
    preds, labels = random_batches(3)
    ours = run_metric(preds, labels, 7)
    jaccard = MulticlassJaccardIndex(num_classes=7, average="macro", ignore_index=IGNORE)
    for pred, label in zip(preds, labels, strict=True):
        jaccard.update(torch.from_numpy(pred)[None], torch.from_numpy(label)[None])
    assert ours["mIoU"] == pytest.approx(jaccard.compute().item(), abs=1e-6)


def test_scores_argmax_and_accumulation_order() -> None:
    preds, labels = random_batches(4)
    whole = run_metric(preds, labels, 7)
    metric = SegmentationMetrics(7)
    for pred, label in reversed(list(zip(preds, labels, strict=True))):
        scores = torch.nn.functional.one_hot(torch.from_numpy(pred), 7).permute(2, 0, 1).float()
        metric.update(scores[None], torch.from_numpy(label)[None])
    assert torch.equal(metric.compute()["confmat"], whole["confmat"])
    assert metric.confmat.dtype == torch.int64


def test_merge_states_is_a_sum() -> None:
    """What DDP does: per-process matrices summed equal the single-process matrix."""
    preds, labels = random_batches(5)
    whole = run_metric(preds, labels, 7)
    parts = [run_metric(preds[:1], labels[:1], 7), run_metric(preds[1:], labels[1:], 7)]
    assert torch.equal(parts[0]["confmat"] + parts[1]["confmat"], whole["confmat"])


def test_empty_and_bad_inputs() -> None:
    metric = SegmentationMetrics(3)
    with pytest.warns(UserWarning, match="before the ``update``"):
        res = metric.compute()
    assert math.isnan(res["mIoU"]) and math.isnan(res["aAcc"])
    with pytest.raises(ValueError, match="outside 0..2"):
        metric.update(torch.tensor([[0, 1]]), torch.tensor([[0, 7]]))
    with pytest.raises(ValueError, match="outside 0..2"):
        metric.update(torch.tensor([[0, 3]]), torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(2, 3), torch.zeros(3, 2), 3)
    with pytest.raises(ValueError, match="score maps"):
        metric.update(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
