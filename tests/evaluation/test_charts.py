"""The matplotlib pictures: confusion heat map and per-class IoU bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vanseg.evaluation.charts import (
    MAX_VALUE_CLASSES,
    class_chart_figure,
    confusion_figure,
    row_normalise,
    save_class_chart,
    save_confusion_png,
)


def test_row_normalise_keeps_empty_rows_zero() -> None:
    fractions = row_normalise(torch.tensor([[3, 1], [0, 0]]))
    np.testing.assert_allclose(fractions, [[0.75, 0.25], [0.0, 0.0]])


def test_heat_map_shows_the_row_fractions_and_names(tmp_path: Path) -> None:
    confmat = np.array([[5, 0, 1], [0, 0, 0], [2, 0, 8]])
    fig = confusion_figure(confmat, ["wall", "sky", "tree"])
    ax = fig.axes[0]
    shown = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(shown, [[5 / 6, 0, 1 / 6], [0, 0, 0], [0.2, 0, 0.8]])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["wall", "sky", "tree"]
    # Values in the non-zero cells only: 5/6 -> ".83", 1/6 -> ".17", .2 and .8.
    assert sorted(t.get_text() for t in ax.texts) == [".17", ".20", ".80", ".83"]
    path = save_confusion_png(confmat, tmp_path / "plots" / "cm.png", ["wall", "sky", "tree"])
    assert Image.open(path).format == "PNG"


def test_many_classes_show_no_values(tmp_path: Path) -> None:
    fig = confusion_figure(np.eye(MAX_VALUE_CLASSES + 1, dtype=np.int64))
    assert len(fig.axes[0].texts) == 0
    path = save_confusion_png(np.eye(300, dtype=np.int64), tmp_path / "cm.png")
    assert max(Image.open(path).size) < 2000


def test_class_chart_leaves_out_nan_and_sorts() -> None:
    fig = class_chart_figure(["a", "b", "c"], [50.0, None, 20.0])
    ax = fig.axes[0]
    assert [p.get_width() for p in ax.patches] == [20.0, 50.0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["c", "a"]


def test_class_chart_png(tmp_path: Path) -> None:
    path = save_class_chart(["a", "b"], [10.0, float("nan")], tmp_path / "bars.png")
    assert Image.open(path).size[0] > 100
