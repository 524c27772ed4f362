"""Confusion-matrix PNG (Pillow only): cells, colour scale, values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vanseg.evaluation.confusion_plot import (
    MAX_VALUE_CLASSES,
    confusion_image,
    row_normalise,
    save_confusion_png,
)

WHITE, DARK_BLUE = (255, 255, 255), (8, 48, 107)


def test_row_normalise_keeps_empty_rows_zero() -> None:
    fractions = row_normalise(torch.tensor([[3, 1], [0, 0]]))
    np.testing.assert_allclose(fractions, [[0.75, 0.25], [0.0, 0.0]])


def _cells(image: Image.Image, offset: int) -> np.ndarray:
    """(K, K) brightness sampled ``offset`` px inside each cell's top-left corner."""
    left, top, right, bottom = image.info["matrix_box"]
    matrix = np.asarray(image.convert("RGB"))[top:bottom, left:right].astype(int).sum(axis=-1)
    return matrix[offset::40, offset::40]


def _has_text(image: Image.Image, cell: int = 40) -> np.ndarray:
    """(K, K): whether a cell holds anything but its fill colour."""
    left, top, right, bottom = image.info["matrix_box"]
    matrix = np.asarray(image.convert("RGB"))[top:bottom, left:right].astype(int)
    k = matrix.shape[0] // cell
    blocks = matrix.reshape(k, cell, k, cell, 3).transpose(0, 2, 1, 3, 4)
    return (blocks != blocks[:, :, :1, :1]).any(axis=(2, 3, 4))


def test_png_has_one_cell_per_class(tmp_path: Path) -> None:
    confmat = np.array([[5, 0, 1], [0, 0, 0], [2, 0, 8]])
    path = save_confusion_png(confmat, tmp_path / "plots" / "cm.png", ["wall", "sky", "tree"])
    image = confusion_image(confmat, ["wall", "sky", "tree"])
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(image))
    left, top, right, bottom = image.info["matrix_box"]
    assert (right - left, bottom - top) == (120, 120)  # 40 px cells for 3 classes
    # Corners carry no text: row "sky" is white, the darkest cell is the "wall" diagonal (5/6),
    # darker than the "tree" diagonal (8/10), which is darker than tree->wall (2/10).
    corners = _cells(image, 3)
    assert (corners[1] == 3 * 255).all()
    assert corners[0, 0] < corners[2, 2] < corners[2, 0]


def test_colour_scale_runs_from_one_at_the_top_to_zero(tmp_path: Path) -> None:
    image = confusion_image(np.array([[1, 1], [0, 2]]))
    left, top, right, bottom = image.info["colorbar_box"]
    assert left > image.info["matrix_box"][2]
    column = np.asarray(image.convert("RGB"))[top:bottom, (left + right) // 2].astype(int)
    assert tuple(column[0]) == DARK_BLUE and tuple(column[-1]) == WHITE
    assert (np.diff(column.sum(axis=-1)) >= 0).all()  # lighter going down


def test_values_in_cells_up_to_the_limit() -> None:
    # Class 0: 1/4 and 3/4; class 1 absent from the labels (no values); class 2: 2/2.
    confmat = np.array([[1, 3, 0], [0, 0, 0], [0, 0, 2]])
    text = _has_text(confusion_image(confmat))
    assert text.tolist() == [[True, True, False], [False, False, False], [False, False, True]]

    many = MAX_VALUE_CLASSES + 1
    image = confusion_image(np.eye(many, dtype=np.int64) * 7 + 1, max_side=many * 40)
    assert not _has_text(image).any()  # too many classes: no values
    limit = confusion_image(np.eye(MAX_VALUE_CLASSES, dtype=np.int64) + 1)
    assert _has_text(limit).all()


def test_many_classes_without_names(tmp_path: Path) -> None:
    path = save_confusion_png(np.eye(300, dtype=np.int64), tmp_path / "cm.png")
    assert Image.open(path).size[0] < 1600
