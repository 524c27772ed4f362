"""mmseg's ``PhotoMetricDistortion`` on RGB uint8 images (docs/reference.md §8).

The original works on BGR; the colour-space conversions here use the RGB codes, so every step
gives the original's result for the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np

__all__ = ["PhotoMetricDistortion", "photometric_distortion"]


def _lut(alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    # The original computes clip(x.astype(float32) * alpha + beta, 0, 255).astype(uint8) per
    # pixel; a 256-entry table of the same float32 expression gives identical values, faster.
    values = np.arange(256, dtype=np.float32) * np.float32(alpha) + np.float32(beta)
    return np.clip(values, 0, 255).astype(np.uint8)


def photometric_distortion(
    img: np.ndarray,
    brightness: float | None = None,
    contrast: float | None = None,
    contrast_first: bool = True,
    saturation: float | None = None,
    hue: int | None = None,
) -> np.ndarray:
    """Apply mmseg's ``PhotoMetricDistortion`` steps with given parameters to an RGB uint8 image.

    Order: brightness (add), contrast (multiply) if ``contrast_first``, saturation (multiply
    HSV S), hue (add to HSV H mod 180), contrast if not ``contrast_first``. ``None`` skips a
    step. Each step clips to [0, 255] and truncates to uint8; saturation and hue each do their
    own RGB -> HSV -> RGB round trip (OpenCV uint8 HSV, H in 0..179).
    """
    if brightness is not None:
        img = cv2.LUT(img, _lut(beta=brightness))
    if contrast is not None and contrast_first:
        img = cv2.LUT(img, _lut(alpha=contrast))
    if saturation is not None:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 1] = cv2.LUT(hsv[..., 1], _lut(alpha=saturation))
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if hue is not None:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        table = ((np.arange(256, dtype=np.int64) + hue) % 180).astype(np.uint8)
        hsv[..., 0] = cv2.LUT(hsv[..., 0], table)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if contrast is not None and not contrast_first:
        img = cv2.LUT(img, _lut(alpha=contrast))
    return img


class PhotoMetricDistortion(A.ImageOnlyTransform):
    """mmseg's ``PhotoMetricDistortion`` with its parameters, order and probabilities.

    Each of brightness, contrast, saturation and hue is applied with probability 0.5; contrast
    runs either right after brightness or last (probability 0.5 each). See
    `photometric_distortion` for the arithmetic.

    Args:
        brightness_delta: Brightness offset drawn from ``U(-delta, delta)``.
        contrast_range: Contrast factor range.
        saturation_range: Saturation factor range.
        hue_delta: Hue offset drawn from the integers ``-delta..delta-1`` (numpy ``randint``).
    """

    def __init__(
        self,
        brightness_delta: float = 32,
        contrast_range: Sequence[float] = (0.5, 1.5),
        saturation_range: Sequence[float] = (0.5, 1.5),
        hue_delta: int = 18,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.brightness_delta = float(brightness_delta)
        self.contrast_range = (float(contrast_range[0]), float(contrast_range[1]))
        self.saturation_range = (float(saturation_range[0]), float(saturation_range[1]))
        self.hue_delta = int(hue_delta)

    def get_params(self) -> dict[str, Any]:
        rng = self.random_generator

        def coin() -> bool:
            return bool(rng.integers(2))

        # Same draw sequence as the original: brightness, mode, [contrast], saturation, hue,
        # [contrast].
        params: dict[str, Any] = {"brightness": None, "contrast": None, "saturation": None}
        if coin():
            params["brightness"] = rng.uniform(-self.brightness_delta, self.brightness_delta)
        params["contrast_first"] = coin()
        if params["contrast_first"] and coin():
            params["contrast"] = rng.uniform(*self.contrast_range)
        if coin():
            params["saturation"] = rng.uniform(*self.saturation_range)
        hue_on = coin() and self.hue_delta > 0
        params["hue"] = int(rng.integers(-self.hue_delta, self.hue_delta)) if hue_on else None
        if not params["contrast_first"] and coin():
            params["contrast"] = rng.uniform(*self.contrast_range)
        return params

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        if img.dtype != np.uint8:
            raise TypeError(f"PhotoMetricDistortion expects a uint8 image, got {img.dtype}.")
        keys = ("brightness", "contrast", "contrast_first", "saturation", "hue")
        return photometric_distortion(img, **{k: params[k] for k in keys})

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness_delta", "contrast_range", "saturation_range", "hue_delta")
