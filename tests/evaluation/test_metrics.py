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


# --- SegmentationMetrics is torchmetrics' MulticlassJaccardIndex with mmseg's update/compute ---


def stock_jaccard(num_classes: int, average: str = "macro") -> MulticlassJaccardIndex:
    return MulticlassJaccardIndex(num_classes=num_classes, average=average, ignore_index=IGNORE)


def random_torch_batches(
    seed: int, num_classes: int, pred_classes: int | None = None, label_classes: int | None = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(pred, label) batches (2, H, W) with about 10% of the labels 255."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for height, width in ((9, 13), (16, 7)):
        shape = (2, height, width)
        label = torch.randint(0, label_classes or num_classes, shape, generator=generator)
        label[torch.rand(shape, generator=generator) < 0.1] = IGNORE
        pred = torch.randint(0, pred_classes or num_classes, shape, generator=generator)
        batches.append((pred, label))
    return batches


def test_is_a_multiclass_jaccard_index() -> None:
    from torchmetrics.utilities.data import dim_zero_sum

    metric = SegmentationMetrics(5)
    assert isinstance(metric, MulticlassJaccardIndex)
    assert metric.average == "macro" and metric.ignore_index == IGNORE
    assert metric.num_classes == 5 and metric.validate_args
    # The stock state: int64 confusion matrix, summed over processes, not in the state_dict.
    assert metric._reductions["confmat"] is dim_zero_sum
    assert metric.confmat.dtype == torch.int64 and metric.confmat.shape == (5, 5)
    assert not metric.full_state_update
    assert metric.state_dict() == {}
    # Behaviour kept from before the subclassing: one class is allowed, zero is not.
    assert SegmentationMetrics(1).num_classes == 1
    with pytest.raises(ValueError, match="positive"):
        SegmentationMetrics(0)


@pytest.mark.parametrize("seed", [0, 1])
def test_miou_equals_stock_on_random_input_with_ignored_pixels(seed: int) -> None:
    ours, stock = SegmentationMetrics(5), stock_jaccard(5)
    for pred, label in random_torch_batches(seed, 5):
        ours.update(pred, label)
        stock.update(pred, label)
    assert torch.equal(ours.confmat, stock.confmat)  # identical state ...
    res = ours.compute()
    assert not res["IoU"].isnan().any()  # every class occurs: nothing differs by definition
    # ... and the same value; stock reduces in float32, ours in float64.
    assert res["mIoU"] == pytest.approx(stock.compute().item(), rel=1e-6)
    per_class = stock_jaccard(5, average="none")
    for pred, label in random_torch_batches(seed, 5):
        per_class.update(pred, label)
    np.testing.assert_allclose(res["IoU"].numpy(), per_class.compute().numpy(), rtol=1e-6)


def test_miou_equals_stock_with_classes_absent_from_both() -> None:
    # 7 classes: labels use 0..3, predictions 0..4 -> 4 is only predicted (IoU 0 in both), 5 and 6
    # are absent from label and prediction.
    batches = random_torch_batches(2, 7, pred_classes=5, label_classes=4)
    ours, stock, stock_none = SegmentationMetrics(7), stock_jaccard(7), stock_jaccard(7, "none")
    for pred, label in batches:
        for metric in (ours, stock, stock_none):
            metric.update(pred, label)
    res = ours.compute()
    assert res["IoU"][4] == 0
    assert res["IoU"][5:].isnan().all() and res["Acc"][4:].isnan().all()
    # Macro averaging gives absent classes weight 0, which is mmseg's nanmean: equal.
    assert res["mIoU"] == pytest.approx(stock.compute().item(), rel=1e-6)
    # What differs: average="none" reports 0 (zero_division) where mmseg reports NaN, so the
    # plain mean of the stock per-class vector counts the 2 absent classes as 0.
    per_class = stock_none.compute()
    assert per_class[5:].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(per_class[:5].numpy(), res["IoU"][:5].numpy(), rtol=1e-6)
    assert per_class.mean().item() == pytest.approx(res["mIoU"] * 5 / 7, rel=1e-6)


def test_all_ignored_batch_is_nan_in_both() -> None:
    pred = torch.tensor([[[0, 1], [2, 1]]])
    label = torch.full_like(pred, IGNORE)
    ours, stock = SegmentationMetrics(3), stock_jaccard(3)
    ours.update(pred, label)
    stock.update(pred, label)
    # Nothing is counted: every ratio is 0/0. mmseg gives NaN for each class and for the means;
    # stock macro gives NaN too (all class weights are 0, and 0/0 in its weighted mean).
    assert ours.confmat.tolist() == [[0, 0, 0]] * 3 == stock.confmat.tolist()
    res = ours.compute()
    assert res["IoU"].isnan().all() and res["Acc"].isnan().all()
    assert math.isnan(res["mIoU"]) and math.isnan(res["mAcc"]) and math.isnan(res["aAcc"])
    assert math.isnan(stock.compute().item())
    # An all-ignored batch adds nothing to later ones.
    ours.update(torch.tensor([[0, 1]]), torch.tensor([[0, 0]]))
    assert ours.compute()["mIoU"] == pytest.approx((1 / 2 + 0) / 2)


def test_in_range_ignore_index_differs_from_stock() -> None:
    # ignore_index=0 lies inside 0..K-1. Both drop the pixels labelled 0; stock macro then also
    # gives class 0 weight 0, while mmseg keeps it (IoU 0 here: predicted once, never labelled).
    # Kept (label, pred): (1, 1), (2, 0), (2, 2) -> IoU = [0/1, 1/1, 1/2].
    pred, label = torch.tensor([[1, 1, 0, 2]]), torch.tensor([[0, 1, 2, 2]])
    ours = SegmentationMetrics(3, ignore_index=0)
    stock = MulticlassJaccardIndex(num_classes=3, average="macro", ignore_index=0)
    ours.update(pred, label)
    stock.update(pred, label)
    assert torch.equal(ours.confmat, stock.confmat)
    assert ours.compute()["mIoU"] == pytest.approx(0.5)
    assert stock.compute().item() == pytest.approx(0.75)


def test_hand_computed_two_images_five_classes() -> None:
    # Image A (ints) and image B (one-hot scores); 255 pixels are dropped with their predictions.
    label_a = torch.tensor([[[0, 0, 1], [2, IGNORE, 1]]])
    pred_a = torch.tensor([[[0, 1, 1], [0, 3, 1]]])
    label_b = torch.tensor([[[2, 2], [0, IGNORE]]])
    pred_b = torch.tensor([[[2, 4], [0, 0]]])
    scores_b = torch.nn.functional.one_hot(pred_b, 5).permute(0, 3, 1, 2).float()
    metric = SegmentationMetrics(5)
    metric.update(pred_a, label_a)
    metric.update(scores_b, label_b)
    res = metric.compute()
    # Kept (label, pred): A (0,0) (0,1) (1,1) (2,0) (1,1); B (2,2) (2,4) (0,0).
    # intersect [2,2,1,0,0]; label area [3,2,3,0,0]; pred area [3,3,1,0,1].
    # IoU: 2/4, 2/3, 1/3, 0/0 = NaN (3 is predicted only on an ignored pixel), 0/1.
    # Acc: 2/3, 2/2, 1/3, NaN, NaN (4 is never labelled).
    assert res["confmat"].tolist() == [
        [2, 1, 0, 0, 0],
        [0, 2, 0, 0, 0],
        [1, 0, 1, 0, 1],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]
    np.testing.assert_allclose(
        res["IoU"].numpy(), [0.5, 2 / 3, 1 / 3, math.nan, 0.0], rtol=1e-12, equal_nan=True
    )
    np.testing.assert_allclose(
        res["Acc"].numpy(), [2 / 3, 1.0, 1 / 3, math.nan, math.nan], rtol=1e-12, equal_nan=True
    )
    assert res["mIoU"] == pytest.approx(1.5 / 4, rel=1e-12)  # (1/2 + 2/3 + 1/3 + 0) / 4
    assert res["mAcc"] == pytest.approx(2 / 3, rel=1e-12)  # (2/3 + 1 + 1/3) / 3
    assert res["aAcc"] == pytest.approx(5 / 8, rel=1e-12)
    assert round_results(res)["IoU"][:3] == [50.0, 66.67, 33.33]
    stock = stock_jaccard(5)
    stock.update(pred_a, label_a)
    stock.update(scores_b, label_b)
    assert stock.compute().item() == pytest.approx(0.375, rel=1e-6)


@pytest.mark.parametrize("validate_args", [True, False])
def test_confmat_is_the_stock_confusion_matrix(validate_args: bool) -> None:
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    batches = random_torch_batches(3, 6)
    metric = SegmentationMetrics(6, validate_args=validate_args)
    expected = torch.zeros(6, 6, dtype=torch.int64)
    for pred, label in batches:
        metric.update(pred, label)
        expected += multiclass_confusion_matrix(pred, label, num_classes=6, ignore_index=IGNORE)
        assert torch.equal(
            confusion_matrix(pred, label, 6),
            multiclass_confusion_matrix(pred, label, num_classes=6, ignore_index=IGNORE),
        )
    assert metric.confmat.dtype == expected.dtype == torch.int64
    assert torch.equal(metric.confmat, expected)
    assert torch.equal(metric.compute()["confmat"], expected)
    metric.reset()
    assert not metric.confmat.any()


def test_forward_and_plot() -> None:
    metric = SegmentationMetrics(3)
    batch = metric(torch.tensor([[0, 1, 2]]), torch.tensor([[0, 1, 1]]))  # forward: this batch
    assert batch["mIoU"] == pytest.approx((1 + 1 / 2 + 0) / 3)
    metric(torch.tensor([[2]]), torch.tensor([[2]]))
    assert metric.compute()["mIoU"] == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)  # both batches
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, _ = metric.plot()
    fig2, _ = metric.plot([metric.compute(), metric.compute()])
    plt.close(fig)
    plt.close(fig2)
