"""Images as the data pipeline reads them: a path, a PIL image or an RGB uint8 array.

`vanseg.Segmenter` and ``predict.py`` (in its DataLoader workers) read every image here: paths go
through the data pipeline's reader (`vanseg.data.ade20k.load_image`: PIL, RGB, no EXIF rotation),
PIL images through its conversion, so the pixels are those that training and ``eval.py`` see.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vanseg.errors import ConfigError, DatasetError, InputNotFoundError

__all__ = ["ImageInput", "read_image"]

#: What a segmenter accepts for one image.
ImageInput = str | Path | Image.Image | np.ndarray


def read_image(image: ImageInput) -> tuple[np.ndarray, Path | None]:
    """``(RGB uint8 (H, W, 3), source path or None)`` for a path, PIL image or array.

    Paths go through the data pipeline's reader and PIL images through its conversion, so the
    pixels are those that training and ``eval.py`` see.

    Raises:
        ConfigError: Unreadable file, a PIL image in a mode without an 8-bit RGB reading
            (``F``, ``I``, ``HSV``, ...), an array that is not RGB ``uint8`` ``(H, W, 3)``, or an
            image without pixels.
    """
    if isinstance(image, (str, Path)):
        rgb, source = _read_file(Path(image)), Path(image)
    elif isinstance(image, Image.Image):
        rgb, source = _convert_pil(image), None
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ConfigError(
                f"an image array must be RGB uint8 of shape (H, W, 3), got {image.dtype} "
                f"{image.shape}; convert it, e.g. np.asarray(pil_image.convert('RGB'))"
            )
        rgb, source = image, None
    else:
        raise ConfigError(
            f"cannot segment a {type(image).__name__}; pass a file path, a PIL image, an RGB "
            "uint8 array (H, W, 3) or a list of them"
        )
    if 0 in rgb.shape:
        what = f"image {source}" if source is not None else "the image"
        kind = "PIL image" if isinstance(image, Image.Image) else "array"
        raise ConfigError(
            f"{what} has no pixels ({kind} of shape {rgb.shape}); pass at least 1x1 pixel"
        )
    return rgb, source


def _read_file(path: Path) -> np.ndarray:
    from vanseg.data.ade20k import load_image

    if not path.is_file():
        raise InputNotFoundError(f"image {path} does not exist (no such file)")
    try:
        return load_image(path)
    except DatasetError as err:
        raise DatasetError(f"cannot read image {path}: {err.__cause__ or err}") from err


def _convert_pil(image: Image.Image) -> np.ndarray:
    """A PIL image as the data pipeline reads it, or a `ConfigError` naming its mode."""
    from vanseg.data.ade20k import image_to_rgb
    from vanseg.data.image_io import PIL_EXACT_MODES

    try:
        return image_to_rgb(image)
    except (OSError, ValueError, KeyError) as err:
        source = getattr(image, "filename", "")
        if source or image.mode in PIL_EXACT_MODES:  # a broken file behind the image
            raise DatasetError(f"cannot read PIL image {source or image}: {err}") from err
        # Modes such as F (32-bit float) or I (32-bit int) have no file form that the
        # original's reader (OpenCV IMREAD_COLOR) turns into 8-bit RGB.
        raise ConfigError(
            f"cannot segment a PIL image of mode {image.mode}: it has no 8-bit RGB reading; "
            "scale its values to 0..255 and convert it first, e.g. image.convert('RGB')"
        ) from err
