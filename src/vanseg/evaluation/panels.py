"""One picture of one evaluated image: [image | prediction | ground truth | error map] + legend.

Prediction and ground truth are class colours blended over the image (`blend`, opacity 0.5);
in the error map, wrong pixels are red, right ones a faded grey copy of the image, and ignored
pixels black. The legend (`add_legend`) lists the classes of prediction and ground truth. The
picture is scaled (nearest neighbour for the masks) so that its longer side is at most
``max_side`` pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vanseg.inference.visualize import add_legend, blend

__all__ = ["ERROR_RGB", "IGNORED_RGB", "error_map", "render_panel"]

ERROR_RGB = (220, 20, 60)
IGNORED_RGB = (0, 0, 0)
_GAP = 4
_TITLE = 14
_TITLES = ("image", "prediction", "ground truth", "errors (red)")


def _fit(array: np.ndarray, max_side: int, resample: Image.Resampling) -> np.ndarray:
    height, width = array.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return array
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(array).resize(size, resample))


def error_map(image: np.ndarray, pred: np.ndarray, label: np.ndarray, ignore: int) -> np.ndarray:
    """RGB ``(H, W, 3)``: errors red, correct pixels a light grey image, ignored pixels black."""
    grey = image.astype(np.float32).mean(axis=-1, keepdims=True)
    out = np.repeat(np.rint(0.4 * grey + 0.6 * 255), 3, axis=-1).astype(np.uint8)
    out[(pred != label) & (label != ignore)] = ERROR_RGB
    out[label == ignore] = IGNORED_RGB
    return out


def render_panel(
    image: np.ndarray,
    pred: np.ndarray,
    label: np.ndarray,
    class_names: Sequence[str],
    palette: np.ndarray,
    ignore_index: int,
    max_side: int = 320,
) -> np.ndarray:
    """The four pictures side by side with titles and the class legend, RGB uint8."""
    image = _fit(image, max_side, Image.Resampling.BILINEAR)
    wide = len(palette) > 256
    pred = _fit(pred.astype(np.int32 if wide else np.uint8), max_side, Image.Resampling.NEAREST)
    label = _fit(label.astype(np.uint8), max_side, Image.Resampling.NEAREST)
    shown_label = np.where(label == ignore_index, 0, label)
    truth = blend(image, shown_label, palette, 0.5)
    truth[label == ignore_index] = image[label == ignore_index]
    errors = error_map(image, pred, label, ignore_index)
    parts = [image, blend(image, pred, palette, 0.5), truth, errors]
    height, width = image.shape[:2]
    canvas = Image.new("RGB", (4 * width + 3 * _GAP, height + _TITLE), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, (part, title) in enumerate(zip(parts, _TITLES, strict=True)):
        x = i * (width + _GAP)
        canvas.paste(Image.fromarray(part), (x, _TITLE))
        draw.text((x + 2, 1), title, fill=(0, 0, 0), font=font)
    classes = np.concatenate([pred.reshape(-1), label[label != ignore_index].reshape(-1)])
    return add_legend(np.asarray(canvas), classes, class_names, palette)
