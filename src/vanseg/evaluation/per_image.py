"""Per-image scores: mIoU, aAcc, pixel count and the top confused pair of one image.

The per-image mIoU follows mmseg's definition applied to one image: ``IoU_c = I_c / U_c`` for
every class present in the label *or* the prediction of that image (pixels labelled
``ignore_index`` excluded from both), averaged over those classes. ``aAcc`` is correct pixels
over labelled pixels. An image without labelled pixels has no score (NaN) and is never ranked.

A row keeps O(classes) numbers (the IoU of the classes present), never per-pixel state, so
the rows of a large validation set cost O(images x classes) memory at most. The dataset-level
numbers do not come from here: they stay with `SegmentationMetrics`.

``per_image.csv`` has one line per image, in dataset order; `read_per_image_csv` reads it back
(used by ``vanseg.tools.compare_eval``).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vanseg.errors import ConfigError, InputNotFoundError

__all__ = [
    "PER_IMAGE_COLUMNS",
    "ImageScore",
    "per_image_csv",
    "read_per_image_csv",
    "score_image",
]

#: Columns of ``per_image.csv``; mIoU and aAcc in percent (2 decimals).
PER_IMAGE_COLUMNS = (
    "index",
    "image",
    "mIoU",
    "aAcc",
    "pixels",
    "confused_label",
    "confused_pred",
    "confused_pixels",
)


@dataclass
class ImageScore:
    """The scores of one image (fractions, NaN where undefined).

    Attributes:
        index: Position in the dataset.
        name: The image's name (file stem).
        miou: Mean IoU over the classes present in label or prediction.
        aacc: Correct over labelled pixels.
        pixels: Labelled pixels (``ignore_index`` excluded).
        confused: ``(label class, predicted class, pixels)`` of the largest off-diagonal cell of
            the image's confusion matrix (ties: lowest label, then lowest prediction), or
            ``None`` when every labelled pixel is right.
        class_iou: ``{class: IoU}`` for the classes present in label or prediction.
    """

    index: int
    name: str
    miou: float
    aacc: float
    pixels: int
    confused: tuple[int, int, int] | None
    class_iou: dict[int, float] = field(default_factory=dict)

    def sort_key(self) -> tuple[float, int]:
        """Worst first: lower mIoU, ties by dataset index (NaN sorts last)."""
        return (math.inf if math.isnan(self.miou) else self.miou, self.index)


def score_image(confmat: torch.Tensor, index: int, name: str) -> ImageScore:
    """Score one image from its ``(K, K)`` confusion matrix (rows label, columns prediction)."""
    counts = confmat.detach().to("cpu", torch.int64)
    diag = counts.diagonal()
    label_px, pred_px = counts.sum(dim=1), counts.sum(dim=0)
    union = label_px + pred_px - diag
    present = torch.nonzero(union > 0).flatten().tolist()
    class_iou = {c: float(diag[c]) / float(union[c]) for c in present}
    pixels = int(label_px.sum())
    miou = sum(class_iou.values()) / len(class_iou) if class_iou else math.nan
    aacc = float(diag.sum()) / pixels if pixels else math.nan
    off = counts.clone()
    off.fill_diagonal_(0)
    confused = None
    if int(off.max()) > 0:
        flat = int(torch.argmax(off.flatten()))  # the first maximum in row-major order
        k = counts.shape[0]
        confused = (flat // k, flat % k, int(off.flatten()[flat]))
    return ImageScore(index, name, miou, aacc, pixels, confused, class_iou)


def _percent(value: float) -> str:
    return "nan" if math.isnan(value) else f"{100 * value:.2f}"


def per_image_csv(scores: list[ImageScore], class_names: list[str]) -> str:
    """``per_image.csv`` text: one row per image in dataset order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PER_IMAGE_COLUMNS)
    for s in sorted(scores, key=lambda s: s.index):
        pair = ["", "", ""]
        if s.confused is not None:
            label, pred, px = s.confused
            pair = [class_names[label], class_names[pred], str(px)]
        writer.writerow([s.index, s.name, _percent(s.miou), _percent(s.aacc), s.pixels, *pair])
    return buffer.getvalue()


def read_per_image_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a ``per_image.csv`` as dicts of strings.

    Raises:
        InputNotFoundError: The file is missing.
        ConfigError: It is not a ``per_image.csv`` (other columns).
    """
    if not path.is_file():
        raise InputNotFoundError(
            f"{path} not found: evaluate with report=true to write per_image.csv"
        )
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != PER_IMAGE_COLUMNS:
            raise ConfigError(
                f"{path} is not a per_image.csv of eval.py: expected the columns "
                f"{','.join(PER_IMAGE_COLUMNS)}"
            )
        return list(reader)
