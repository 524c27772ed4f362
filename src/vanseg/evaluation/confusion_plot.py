"""Confusion-matrix heat map as a PNG, drawn with Pillow (no plotting library needed).

Rows are labels, columns predictions, each row normalised to sum 1 (so the diagonal is the
per-class accuracy); white is 0 and dark blue 1, as the colour scale on the right shows. Rows of
classes absent from the labels stay white. Class names are written along both axes when the
cells are large enough to read them, and with up to :data:`MAX_VALUE_CLASSES` classes the
non-zero cells also show their fractions (two decimals, ".83"; "1" for 1.00).

The returned image records where things are in ``image.info``: ``"matrix_box"`` and
``"colorbar_box"`` as ``(left, top, right, bottom)`` pixel boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = ["MAX_VALUE_CLASSES", "confusion_image", "row_normalise", "save_confusion_png"]

#: Up to this many classes the cells show their values.
MAX_VALUE_CLASSES = 30
_BAR_GAP, _BAR_WIDTH, _BAR_LABELS = 16, 16, 44

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


def _colour(fractions: np.ndarray) -> np.ndarray:
    """Fractions in [0, 1] -> RGB uint8 on the white-to-dark-blue scale."""
    return np.rint(_LOW + np.asarray(fractions)[..., None] * (_HIGH - _LOW)).astype(np.uint8)


def _value_text(fraction: float) -> str:
    return "1" if fraction >= 0.995 else f"{fraction:.2f}".removeprefix("0")


def _draw_colorbar(canvas: Image.Image, box: tuple[int, int, int, int], font) -> None:
    """Vertical scale: 1 at the top, 0 at the bottom, ticks every 0.25."""
    left, top, right, bottom = box
    height = bottom - top
    ramp = np.linspace(1.0, 0.0, height)[:, None].repeat(right - left, axis=1)
    canvas.paste(Image.fromarray(_colour(ramp)), (left, top))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((left - 1, top - 1, right, bottom), outline=(0, 0, 0))
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + round((1.0 - tick) * (height - 1))
        draw.line((right, y, right + 3, y), fill=(0, 0, 0))
        draw.text((right + 5, y), f"{tick:g}", fill=(0, 0, 0), font=font, anchor="lm")


def confusion_image(
    confmat: np.ndarray | torch.Tensor,
    class_names: Sequence[str] | None = None,
    max_side: int = 1500,
) -> Image.Image:
    """Render the row-normalised confusion matrix; ``max_side`` bounds the matrix in pixels."""
    fractions = row_normalise(confmat)
    num_classes = fractions.shape[0]
    cell = int(np.clip(max_side // max(num_classes, 1), 1, 40))
    matrix = Image.fromarray(_colour(fractions)).resize(
        (num_classes * cell, num_classes * cell), Image.Resampling.NEAREST
    )
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    show_names = cell >= 8
    font = _font(int(np.clip(cell - 2, 8, 14)))
    margin = 8 + (max(int(font.getlength(n)) for n in names) if show_names else 0)
    title_h = 24
    right_part = _BAR_GAP + _BAR_WIDTH + _BAR_LABELS
    matrix_top = title_h + margin
    bar_height = max(matrix.height, 64)
    canvas = Image.new(
        "RGB", (margin + matrix.width + right_part, matrix_top + bar_height + 8), (255, 255, 255)
    )
    canvas.paste(matrix, (margin, matrix_top))
    matrix_box = (margin, matrix_top, margin + matrix.width, matrix_top + matrix.height)
    bar_left = matrix_box[2] + _BAR_GAP
    bar_box = (bar_left, matrix_top, bar_left + _BAR_WIDTH, matrix_top + bar_height)
    _draw_colorbar(canvas, bar_box, _font(11))
    canvas.info.update(matrix_box=matrix_box, colorbar_box=bar_box)
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), "rows: label, columns: prediction (row-normalised)", fill=(0, 0, 0))
    if num_classes <= MAX_VALUE_CLASSES and cell >= 24:
        value_font = _font(min(12, cell // 3))
        for i, j in np.ndindex(num_classes, num_classes):
            fraction = float(fractions[i, j])
            if fraction == 0.0:  # empty cells (and rows of absent classes) stay blank
                continue
            ink = (255, 255, 255) if fraction > 0.5 else (0, 0, 0)
            centre = (margin + j * cell + cell / 2, matrix_top + i * cell + cell / 2)
            draw.text(centre, _value_text(fraction), fill=ink, font=value_font, anchor="mm")
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
