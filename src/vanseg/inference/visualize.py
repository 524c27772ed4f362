"""Pictures of a prediction: class colours, overlays, legends and label PNGs.

* :func:`blend`: ``(1 - opacity) * image + opacity * colour``, as mmseg's ``show_result``;
* :func:`add_legend`: a white panel to the right of a picture with one colour swatch and class
  name per class present in the mask, most frequent first (PIL only, no matplotlib). The picture
  itself is untouched: its top-left ``H x W`` pixels are still the overlay;
* :func:`save_label`: class indices as a palette-mode PNG, written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vanseg.utils.atomic import write_atomic

__all__ = [
    "add_legend",
    "blend",
    "colorize",
    "palette_array",
    "present_classes",
    "save_label",
]


def palette_array(num_classes: int, palette: str | Sequence[Sequence[int]] | None) -> np.ndarray:
    """``(K, 3)`` uint8 colours: ``"ade20k"``, a list of ``[r, g, b]``, or ``None`` (generated)."""
    from vanseg.data.classes import resolve_palette

    return np.asarray(resolve_palette(palette, num_classes), dtype=np.uint8)


def colorize(mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Class indices ``(H, W)`` -> RGB ``(H, W, 3)`` uint8."""
    return palette[mask]


def blend(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, opacity: float) -> np.ndarray:
    """``(1 - opacity) * image + opacity * colours``, rounded to uint8 (mmseg ``show_result``)."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity={opacity} must be in [0, 1]")
    mixed = (1.0 - opacity) * image.astype(np.float32) + opacity * colorize(mask, palette)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def save_label(mask: np.ndarray, palette: np.ndarray, path: Path) -> None:
    """Write class indices as a palette-mode PNG (16-bit grayscale beyond 256 classes)."""
    if len(palette) > 256:
        wide = Image.fromarray(mask.astype(np.uint16))
        write_atomic(path, lambda tmp: wide.save(tmp, format="PNG"))
        return
    label = Image.fromarray(mask.astype(np.uint8))
    label.putpalette(palette.reshape(-1).tolist())  # turns the "L" image into "P" mode
    write_atomic(path, lambda tmp: label.save(tmp, format="PNG"))


_ROW = 16  # pixels per legend row
_SWATCH = 12
_MARGIN = 6
_BACKGROUND = (255, 255, 255)


def present_classes(mask: np.ndarray, num_classes: int) -> list[int]:
    """Class ids that occur in ``mask`` (values ``< num_classes``), most pixels first."""
    counts = np.bincount(mask.reshape(-1).astype(np.int64), minlength=num_classes)[:num_classes]
    order = np.argsort(-counts, kind="stable")
    return [int(c) for c in order if counts[c] > 0]


def add_legend(
    picture: np.ndarray,
    mask: np.ndarray,
    class_names: Sequence[str],
    palette: np.ndarray,
) -> np.ndarray:
    """``picture`` (RGB uint8 ``(H, W, 3)``) with a legend panel of the classes in ``mask``.

    Returns:
        RGB uint8 ``(max(H, rows * 16 + 12), W + panel width, 3)``; the panel is white, the
        picture sits at the top left, and white fills any space below it.
    """
    classes = present_classes(mask, len(class_names))
    font = ImageFont.load_default()
    labels = [f"{c} {class_names[c]}" for c in classes]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_width = max((int(measure.textlength(t, font=font)) for t in labels), default=0)
    panel = _MARGIN * 3 + _SWATCH + text_width
    height, width = picture.shape[:2]
    total_height = max(height, len(labels) * _ROW + 2 * _MARGIN)
    canvas = Image.new("RGB", (width + panel, total_height), _BACKGROUND)
    canvas.paste(Image.fromarray(picture), (0, 0))
    draw = ImageDraw.Draw(canvas)
    x = width + _MARGIN
    for row, (cls, text) in enumerate(zip(classes, labels, strict=True)):
        y = _MARGIN + row * _ROW
        colour = tuple(int(v) for v in palette[cls])
        draw.rectangle([x, y, x + _SWATCH - 1, y + _SWATCH - 1], fill=colour, outline=(0, 0, 0))
        draw.text((x + _SWATCH + _MARGIN, y), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)
