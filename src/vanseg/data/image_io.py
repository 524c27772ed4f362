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
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "PIL_EXACT_MODES",
    "bit_depth",
    "exif_orientation",
    "image_kind",
    "jpeg_damage",
    "read_rgb",
]

#: PIL modes whose ``convert("RGB")`` equals OpenCV's ``IMREAD_COLOR`` read (BGR -> RGB).
PIL_EXACT_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX"})

_CV2_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
#: The EXIF tag of the orientation (1: as stored; 2-8: mirrored and/or rotated when viewed).
EXIF_ORIENTATION = 0x0112
#: libjpeg warnings that mean damaged pixel data (jerror.h); a bad ICC marker spares the pixels.
_JPEG_DAMAGE = ("Corrupt JPEG data", "Premature end of JPEG file")


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


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation of an opened image: 1 (as stored) unless the file says otherwise."""
    try:
        return int(img.getexif().get(EXIF_ORIENTATION, 1))
    except (OSError, ValueError, SyntaxError, TypeError):
        return 1  # unreadable EXIF: OpenCV ignores it too


def jpeg_damage(path: str | Path) -> list[str]:
    """The damage libjpeg reports while decoding a whole JPEG file, e.g. ``Corrupt JPEG data:
    1430 extraneous bytes before marker 0xd9``; empty for an intact file.

    libjpeg decodes damaged entropy-coded data to garbage without an error; it only prints
    warnings to the C ``stderr``. This decodes the file with OpenCV (whose libjpeg prints them)
    while file descriptor 2 is redirected to a temporary file, for this one call; anything else
    written to it meanwhile is passed on to the real ``stderr``.

    Raises:
        OSError: The file cannot be read or decoded at all.
    """
    data = np.fromfile(path, dtype=np.uint8)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                decoded = cv2.imdecode(data, _CV2_FLAGS) if data.size else None
            finally:
                os.dup2(saved, 2)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines()
    finally:
        os.close(saved)
    damage = [
        line.strip()
        for line in lines
        if line.strip().startswith(_JPEG_DAMAGE) and "ICC marker" not in line
    ]
    others = [line for line in lines if line.strip() and line.strip() not in damage]
    if others:
        print("\n".join(others), file=sys.stderr)
    if decoded is None:
        raise OSError("OpenCV cannot decode it" + (f" ({damage[0]})" if damage else ""))
    return damage


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
