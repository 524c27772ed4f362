"""Reading images as the original pipeline does, whatever their bit depth and channels.

The original reads images with ``mmcv.imread(flag='color')``, i.e. OpenCV's ``IMREAD_COLOR``
(docs/reference.md §8): 16-bit images become 8-bit by keeping the high byte, grayscale becomes
three equal channels, alpha is dropped and palette images give their colours. PIL's
``convert("RGB")`` gives exactly that for 8-bit images (``1``, ``L``, ``LA``, ``P``, ``PA``,
``RGB``, ``RGBA``), but clips 16-bit grayscale to white and converts CMYK differently, so every
other mode is decoded by OpenCV itself. EXIF orientation is ignored either way: the labels are
not rotated (docs/pitfalls.md D3).
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

__all__ = ["PIL_EXACT_MODES", "bit_depth", "image_kind", "read_rgb"]

#: PIL modes whose ``convert("RGB")`` equals OpenCV's ``IMREAD_COLOR`` read (BGR -> RGB).
PIL_EXACT_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX"})

_CV2_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


def bit_depth(img: Image.Image) -> int:
    """Bits per channel as stored in the file (PIL reads 16-bit RGB PNGs as 8-bit ``RGB``)."""
    raw = img.tile[0][-1] if img.tile else img.mode
    raw = raw[0] if isinstance(raw, tuple) else raw
    if img.mode in ("I", "F") or "32" in str(raw):
        return 32
    return 16 if "16" in str(raw) else 8


def image_kind(img: Image.Image) -> str | None:
    """How an image differs from plain 8-bit RGB, in words (``None``: it does not)."""
    depth = bit_depth(img)
    notes = [f"{depth}-bit (read as 8-bit by keeping the high byte)"] if depth != 8 else []
    kinds = {
        "1": "1-bit black and white",
        "L": "grayscale (read as 3 equal channels)",
        "I;16": "grayscale (read as 3 equal channels)",
        "I;16B": "grayscale (read as 3 equal channels)",
        "I;16L": "grayscale (read as 3 equal channels)",
        "I": "grayscale (read as 3 equal channels)",
        "LA": "grayscale with alpha (alpha dropped)",
        "P": "palette (read as its colours)",
        "PA": "palette with alpha (alpha dropped)",
        "RGBA": "RGBA (alpha dropped)",
        "CMYK": "CMYK (converted to RGB by OpenCV)",
    }
    if img.mode in kinds:
        notes.append(kinds[img.mode])
    elif img.mode not in ("RGB", "RGBX"):
        notes.append(f"PIL mode {img.mode} (decoded by OpenCV)")
    return ", ".join(notes) or None


def _decode_with_cv2(data: np.ndarray) -> np.ndarray:
    bgr = cv2.imdecode(data, _CV2_FLAGS) if data.size else None
    if bgr is None or bgr.ndim != 3 or bgr.dtype != np.uint8:
        raise OSError("OpenCV cannot decode it")
    return np.ascontiguousarray(bgr[..., ::-1])


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """An in-memory PIL image as RGB ``uint8`` ``(H, W, 3)``, as :func:`read_rgb` reads files.

    Modes PIL converts exactly are converted directly. Any other (16-bit, CMYK, ...) is read
    from the file it was opened from, if any, else through a lossless PNG (TIFF for CMYK)
    encoding and OpenCV.
    """
    if img.mode in PIL_EXACT_MODES:
        return np.asarray(img.convert("RGB"))
    source = getattr(img, "filename", "")
    if source and Path(source).is_file():
        return read_rgb(source)
    buffer = io.BytesIO()
    img.save(buffer, format="TIFF" if img.mode == "CMYK" else "PNG")
    return _decode_with_cv2(np.frombuffer(buffer.getvalue(), dtype=np.uint8))


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image as RGB ``uint8`` ``(H, W, 3)``, equal to OpenCV's ``IMREAD_COLOR`` read.

    Raises:
        OSError, ValueError, SyntaxError, Image.DecompressionBombError: Unreadable or corrupt
            file (the caller names it in its error).
    """
    with Image.open(path) as img:
        if img.mode in PIL_EXACT_MODES:
            return np.asarray(img.convert("RGB"))
    return _decode_with_cv2(np.fromfile(path, dtype=np.uint8))
