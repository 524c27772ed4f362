"""The evaluation's pictures, drawn with matplotlib: the confusion heat map and per-class bars.

* `confusion_figure`: rows are labels, columns predictions, each row normalised to sum 1 (the
  diagonal is the per-class accuracy), white 0 to dark blue 1 with a colour bar. Rows of classes
  absent from the labels stay white. Class names label both axes up to :data:`MAX_NAMED_CLASSES`
  classes; up to :data:`MAX_VALUE_CLASSES` the non-zero cells also show their fraction.
* `class_chart_figure`: per-class IoU as horizontal bars (NaN classes left out), lowest at top.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas, never pyplot, so no
global state or display is involved; matplotlib is imported only when a picture is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "MAX_NAMED_CLASSES",
    "MAX_VALUE_CLASSES",
    "class_chart_figure",
    "confusion_figure",
    "row_normalise",
    "save_class_chart",
    "save_confusion_png",
    "save_figure",
]

#: Up to this many classes the cells show their values.
MAX_VALUE_CLASSES = 30
#: Up to this many classes the axes carry class names.
MAX_NAMED_CLASSES = 60


def row_normalise(confmat: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(K, K)`` counts -> row fractions (float64); all-zero rows stay 0."""
    counts = np.asarray(confmat.cpu() if isinstance(confmat, torch.Tensor) else confmat)
    counts = counts.astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def _value_text(fraction: float) -> str:
    return "1" if fraction >= 0.995 else f"{fraction:.2f}".removeprefix("0")


def confusion_figure(
    confmat: np.ndarray | torch.Tensor, class_names: Sequence[str] | None = None
) -> Figure:
    """The row-normalised confusion matrix as a heat map with a colour bar."""
    from matplotlib.figure import Figure

    fractions = row_normalise(confmat)
    k = fractions.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    side = float(np.clip(0.28 * k + 2.5, 4.0, 16.0))
    fig = Figure(figsize=(side + 1.2, side), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="fraction of the label's pixels")
    ax.set_xlabel("prediction")
    ax.set_ylabel("label")
    ax.set_title("confusion matrix (row-normalised)")
    if k <= MAX_NAMED_CLASSES:
        ax.set_xticks(range(k), names, rotation=90, fontsize=8)
        ax.set_yticks(range(k), names, fontsize=8)
    if k <= MAX_VALUE_CLASSES:
        for i, j in zip(*np.nonzero(fractions), strict=True):
            value = float(fractions[i, j])
            ink = "white" if value > 0.5 else "black"
            ax.text(j, i, _value_text(value), ha="center", va="center", color=ink, fontsize=7)
    return fig


def class_chart_figure(names: Sequence[str], iou: Sequence[float | None]) -> Figure:
    """Per-class IoU (percent) as horizontal bars, lowest at the top; NaN/None left out."""
    from matplotlib.figure import Figure

    pairs = [(n, v) for n, v in zip(names, iou, strict=True) if v is not None and not math.isnan(v)]
    pairs.sort(key=lambda p: p[1])
    height = float(np.clip(0.22 * len(pairs) + 1.2, 2.5, 40.0))
    fig = Figure(figsize=(7.0, height), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.barh(range(len(pairs)), [v for _, v in pairs], color="#3b75af")
    ax.set_yticks(range(len(pairs)), [n for n, _ in pairs], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("IoU (%)")
    ax.set_title("per-class IoU")
    ax.grid(axis="x", alpha=0.3)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG to ``path`` (parents created) with the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png")
    return path


def save_confusion_png(
    confmat: np.ndarray | torch.Tensor,
    path: str | Path,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write `confusion_figure` to ``path`` and return the path."""
    return save_figure(confusion_figure(confmat, class_names), path)


def save_class_chart(names: Sequence[str], iou: Sequence[float | None], path: str | Path) -> Path:
    """Write `class_chart_figure` to ``path`` and return the path."""
    return save_figure(class_chart_figure(names, iou), path)
