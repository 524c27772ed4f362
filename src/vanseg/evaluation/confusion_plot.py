"""Confusion-matrix heat map as a PNG, drawn with Pillow (no plotting library needed).

Rows are labels, columns predictions, each row normalised to sum 1 (so the diagonal is the
per-class accuracy); white is 0 and dark blue 1. Rows of classes absent from the labels stay
white. Class names are written along both axes when the cells are large enough to read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = ["confusion_image", "row_normalise", "save_confusion_png"]

_LOW = np.array([255, 255, 255], dtype=np.float64)
_HIGH = np.array([8, 48, 107], dtype=np.float64)


def row_normalise(confmat: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(K, K)`` counts -> row fractions (float64); all-zero rows stay 0."""
    counts = np.asarray(confmat.cpu() if isinstance(confmat, torch.Tensor) else confmat)
    counts = counts.astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # old Pillow or no FreeType: fixed bitmap font
        return ImageFont.load_default()


def confusion_image(
    confmat: np.ndarray | torch.Tensor,
    class_names: Sequence[str] | None = None,
    max_side: int = 1500,
) -> Image.Image:
    """Render the row-normalised confusion matrix; ``max_side`` bounds the matrix in pixels."""
    fractions = row_normalise(confmat)
    num_classes = fractions.shape[0]
    cell = int(np.clip(max_side // max(num_classes, 1), 1, 40))
    colours = _LOW + fractions[..., None] * (_HIGH - _LOW)  # (K, K, 3)
    matrix = Image.fromarray(np.rint(colours).astype(np.uint8)).resize(
        (num_classes * cell, num_classes * cell), Image.Resampling.NEAREST
    )
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    show_names = cell >= 8
    font = _font(int(np.clip(cell - 2, 8, 14)))
    margin = 8 + (max(int(font.getlength(n)) for n in names) if show_names else 0)
    title_h = 24
    canvas = Image.new("RGB", (margin + matrix.width + 8, title_h + margin + matrix.height + 8))
    canvas.paste((255, 255, 255), (0, 0, *canvas.size))
    canvas.paste(matrix, (margin, title_h + margin))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), "rows: label, columns: prediction (row-normalised)", fill=(0, 0, 0))
    if show_names:
        top = Image.new("RGB", (margin, matrix.width), (255, 255, 255))
        top_draw = ImageDraw.Draw(top)
        for i, name in enumerate(names):
            y = title_h + margin + i * cell
            draw.text((margin - 4, y + cell / 2), name, fill=(0, 0, 0), font=font, anchor="rm")
            top_draw.text((4, i * cell + cell / 2), name, fill=(0, 0, 0), font=font, anchor="lm")
        # Column names: drawn as rows, then turned a quarter left so they read upwards from
        # the top edge of their column.
        canvas.paste(top.rotate(90, expand=True), (margin, title_h))
    return canvas


def save_confusion_png(
    confmat: np.ndarray | torch.Tensor,
    path: str | Path,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write :func:`confusion_image` to ``path`` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    confusion_image(confmat, class_names).save(path)
    return path
