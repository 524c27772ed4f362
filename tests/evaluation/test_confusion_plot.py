"""Confusion-matrix PNG (Pillow only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vanseg.evaluation.confusion_plot import row_normalise, save_confusion_png


def test_row_normalise_keeps_empty_rows_zero() -> None:
    fractions = row_normalise(torch.tensor([[3, 1], [0, 0]]))
    np.testing.assert_allclose(fractions, [[0.75, 0.25], [0.0, 0.0]])


def test_png_has_one_cell_per_class(tmp_path: Path) -> None:
    confmat = np.array([[5, 0, 1], [0, 0, 0], [2, 0, 8]])
    path = save_confusion_png(confmat, tmp_path / "plots" / "cm.png", ["wall", "sky", "tree"])
    image = np.asarray(Image.open(path).convert("RGB"))
    # Matrix in the bottom-right corner, 40 px cells for 3 classes: row "sky" is white,
    # the darkest cell is the "wall" diagonal (5/6), darker than the "tree" diagonal (8/10).
    cell = image[-8 - 120 :, -8 - 120 :][:120, :120]
    centres = cell[20::40, 20::40].astype(int).sum(axis=-1)  # (3, 3) brightness
    assert (centres[1] == 3 * 255).all()
    assert centres[0, 0] < centres[2, 2] < centres[2, 0]


def test_many_classes_without_names(tmp_path: Path) -> None:
    path = save_confusion_png(np.eye(300, dtype=np.int64), tmp_path / "cm.png")
    assert Image.open(path).size[0] < 1600
