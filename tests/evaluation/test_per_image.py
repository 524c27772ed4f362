"""Per-image scores and the worst-k heap, against hand computations."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vanseg.evaluation.metrics import confusion_matrix
from vanseg.evaluation.per_image import ImageScore, per_image_csv, score_image
from vanseg.evaluation.worst import WorstImages, panel_name, prune_panels, select_worst

K = 4
NAMES = ["a", "b", "c", "d"]


def _score(label: list, pred: list, index: int) -> ImageScore:
    label_t, pred_t = torch.tensor(label), torch.tensor(pred)
    return score_image(confusion_matrix(pred_t, label_t, K), index, f"img{index}")


def test_three_images_by_hand() -> None:
    # Image 0: the ignored pixel (255) is predicted as class 3, which therefore does not count.
    # Labelled 5 px, 4 right: aAcc 4/5. Class 0: I 1, U 2 (label 2, pred 1); class 1: I 2,
    # U 3; class 2: I 1, U 1. mIoU = (1/2 + 2/3 + 1) / 3 = 13/18. Most confused: 0 -> 1, 1 px.
    first = _score([[0, 0, 1], [1, 2, 255]], [[0, 1, 1], [1, 2, 3]], 0)
    assert first.miou == pytest.approx(13 / 18) and first.aacc == pytest.approx(0.8)
    assert first.pixels == 5 and first.confused == (0, 1, 1)
    assert first.class_iou == pytest.approx({0: 0.5, 1: 2 / 3, 2: 1.0})
    # Image 1: classes 1 and 2 absent from label and prediction (left out); class 3 only
    # predicted (IoU 0). Class 0: I 2, U 4. mIoU = (1/2 + 0) / 2; aAcc 2/4.
    second = _score([[0, 0], [0, 0]], [[0, 0], [3, 3]], 1)
    assert second.miou == pytest.approx(0.25) and second.aacc == pytest.approx(0.5)
    assert second.confused == (0, 3, 2) and set(second.class_iou) == {0, 3}
    # Image 2: all right, one class: mIoU 1, nothing confused.
    third = _score([[2, 2, 2]], [[2, 2, 2]], 2)
    assert (third.miou, third.aacc, third.pixels, third.confused) == (1.0, 1.0, 3, None)
    text = per_image_csv([third, first, second], NAMES)
    assert text.splitlines() == [
        "index,image,mIoU,aAcc,pixels,confused_label,confused_pred,confused_pixels",
        "0,img0,72.22,80.00,5,a,b,1",
        "1,img1,25.00,50.00,4,a,d,2",
        "2,img2,100.00,100.00,3,,,",
    ]


def test_an_image_without_labelled_pixels_has_no_score() -> None:
    empty = _score([[255, 255]], [[0, 1]], 7)
    assert math.isnan(empty.miou) and math.isnan(empty.aacc) and empty.pixels == 0
    assert "7,img7,nan,nan,0,,," in per_image_csv([empty], NAMES)
    assert select_worst([empty], 3) == []


def test_ties_in_the_confused_pair_take_the_lowest_label_then_prediction() -> None:
    # Off-diagonal: 1 -> 0 (1 px), 0 -> 2 (1 px), 0 -> 1 (1 px): the first is (0, 1).
    score = _score([1, 0, 0], [0, 2, 1], 0)
    assert score.confused == (0, 1, 1)


def _fake(index: int, miou: float) -> ImageScore:
    return ImageScore(index, f"n{index}", miou, 0.5, 10, None, {})


SCORES = [_fake(0, 0.5), _fake(1, 0.2), _fake(2, 0.5), _fake(3, 0.9), _fake(4, 0.2), _fake(5, 0.1)]


def test_worst_k_order_and_ties() -> None:
    worst = select_worst(SCORES, 4)
    # 0.1; then the two 0.2 by index (1, 4); then the first 0.5 by index (0, not 2).
    assert [s.index for s in worst] == [5, 1, 4, 0]


@pytest.mark.parametrize("order", list(itertools.permutations(range(6)))[::97])
def test_the_heap_keeps_the_same_panels_in_any_arrival_order(order, tmp_path: Path) -> None:
    heap = WorstImages(tmp_path, 3)
    rendered = []
    for i in order:
        score = SCORES[i]
        heap.offer(
            score, lambda s=score: (rendered.append(s.index), np.zeros((2, 2, 3), np.uint8))[1]
        )
    expected = [panel_name(SCORES[i]) for i in (5, 1, 4)]
    assert heap.kept() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)  # evicted: deleted
    assert len(rendered) <= len(SCORES)  # each image rendered at most once


def test_two_heaps_merged_equal_one(tmp_path: Path) -> None:
    single, shared = tmp_path / "single", tmp_path / "shared"
    one = WorstImages(single, 3)
    for s in SCORES:
        one.offer(s, lambda: np.zeros((2, 2, 3), np.uint8))
    ranks = [WorstImages(shared, 3), WorstImages(shared, 3)]  # shards 0-2 and 3-5
    for s in SCORES:
        ranks[s.index // 3].offer(s, lambda: np.zeros((2, 2, 3), np.uint8))
    assert len(list(shared.iterdir())) == 6  # each rank kept its own 3
    keep = [panel_name(s) for s in select_worst(SCORES, 3)]
    assert prune_panels(shared, keep) == sorted({panel_name(s) for s in SCORES} - set(keep))
    assert sorted(p.name for p in shared.iterdir()) == sorted(p.name for p in single.iterdir())


def test_k_zero_renders_nothing(tmp_path: Path) -> None:
    heap = WorstImages(tmp_path / "w", 0)
    assert not heap.offer(SCORES[0], lambda: pytest.fail("rendered"))
    assert not (tmp_path / "w").exists()
