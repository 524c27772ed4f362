"""Geometric steps of the training pipeline: keep-ratio rescale and the class-ratio crop.

mmcv/mmseg arithmetic (docs/reference.md §8): `rescale_size` rounds like mmcv's
``rescale_size``; `choose_crop_box` draws and checks crop boxes like mmseg's ``RandomCrop``.
The albumentations transforms draw from their per-transform generator, so `TrainTransform`
controls every draw with one seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np

from vanseg.data.classes import IGNORE_INDEX

__all__ = [
    "RandomCropCatMax",
    "RandomRescale",
    "choose_crop_box",
    "crop_box_ok",
    "resize_image",
    "rescale_size",
    "resize_to_multiple_size",
]


def rescale_size(width: int, height: int, scale: Sequence[int]) -> tuple[int, int]:
    """Keep-ratio target size ``(w, h)`` that fits ``scale`` as mmcv's ``rescale_size`` does.

    The factor is ``min(max(scale) / long side, min(scale) / short side)`` and each side becomes
    ``int(side * factor + 0.5)``, but at least 1: where that gives 0 (a side below half a pixel,
    e.g. 2 px across 5000 px at ratio 0.5) the original asks ``cv2.resize`` for an empty image
    and stops training.
    """
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(width, height), short_edge / min(width, height))
    return max(1, int(width * factor + 0.5)), max(1, int(height * factor + 0.5))


def resize_to_multiple_size(width: int, height: int, divisor: int) -> tuple[int, int]:
    """``(ceil(w / d) * d, ceil(h / d) * d)``: the size ``ResizeToMultiple`` resizes to."""
    return math.ceil(width / divisor) * divisor, math.ceil(height / divisor) * divisor


def resize_image(img: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """``cv2.resize`` to ``size = (w, h)``, bilinear or nearest; the input itself if it fits."""
    if (img.shape[1], img.shape[0]) == size:
        return img
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(img, size, interpolation=interpolation)


class RandomRescale(A.DualTransform):
    """Keep-ratio rescale to a random multiple of ``scale`` (mmseg ``Resize`` with ``ratio_range``).

    Draws ``r ~ U(ratio_range)``, targets ``(int(scale[0] * r), int(scale[1] * r))`` and resizes
    with `rescale_size`: the image bilinearly, the mask with nearest neighbour.

    Args:
        scale: ``(long, short)`` edge bounds at ratio 1 (``ADE20K_SCALE`` for ADE20K).
        ratio_range: ``(low, high)`` of the uniform ratio.
    """

    def __init__(
        self,
        scale: Sequence[int],
        ratio_range: Sequence[float],
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.scale = tuple(int(s) for s in scale)
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        height, width = params["shape"][:2]
        low, high = self.ratio_range
        ratio = self.random_generator.random() * (high - low) + low
        target = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        return {"size": rescale_size(width, height, target), "ratio": ratio}

    def apply(self, img: np.ndarray, size: tuple[int, int], **params: Any) -> np.ndarray:
        return resize_image(img, size, nearest=False)

    def apply_to_mask(self, mask: np.ndarray, size: tuple[int, int], **params: Any) -> np.ndarray:
        return resize_image(mask, size, nearest=True)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale", "ratio_range")


def crop_box_ok(mask: np.ndarray, cat_max_ratio: float, ignore_index: int) -> bool:
    """Whether a cropped ``uint8`` mask holds more than one class, none above ``cat_max_ratio``.

    Ignored pixels are left out of the counts, as in mmseg's ``RandomCrop``.
    """
    counts = np.bincount(mask.ravel(), minlength=256)
    counts[ignore_index] = 0
    counts = counts[counts > 0]
    return len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio


def choose_crop_box(
    mask: np.ndarray,
    crop_size: Sequence[int],
    cat_max_ratio: float,
    ignore_index: int,
    rng: np.random.Generator,
    max_checks: int = 10,
) -> tuple[int, int, int, int]:
    """Pick a crop box ``(y1, y2, x1, x2)`` the way mmseg's ``RandomCrop`` does.

    Offsets are uniform over the margin (an axis shorter than the crop is not cropped). Unless
    ``cat_max_ratio >= 1``, a box is checked with `crop_box_ok` up to ``max_checks`` times and
    each rejection draws a new box, so after ``max_checks`` rejections the last box drawn (the
    11th by default) is used unchecked.

    Args:
        mask: ``uint8`` label ``(H, W)``.
        crop_size: ``(height, width)`` of the crop.
        cat_max_ratio: Largest allowed share of one class among non-ignored pixels.
        ignore_index: Label of ignored pixels.
        rng: Source of the offsets (``rng.integers(0, margin + 1)``, y then x).
        max_checks: Number of boxes checked before one is accepted unchecked.
    """
    height, width = mask.shape[:2]
    crop_h, crop_w = int(crop_size[0]), int(crop_size[1])

    def draw() -> tuple[int, int, int, int]:
        y1 = int(rng.integers(0, max(height - crop_h, 0) + 1))
        x1 = int(rng.integers(0, max(width - crop_w, 0) + 1))
        return y1, min(y1 + crop_h, height), x1, min(x1 + crop_w, width)

    box = draw()
    if cat_max_ratio < 1.0:
        for _ in range(max_checks):
            y1, y2, x1, x2 = box
            if crop_box_ok(mask[y1:y2, x1:x2], cat_max_ratio, ignore_index):
                break
            box = draw()
    return box


class RandomCropCatMax(A.DualTransform):
    """Random crop that avoids crops dominated by one class (mmseg ``RandomCrop``).

    Unlike ``A.RandomCrop`` a smaller image gives a smaller crop instead of an error; the pad at
    the end of the pipeline restores the size. See `choose_crop_box`.

    Args:
        crop_size: ``(height, width)``.
        cat_max_ratio: Largest allowed share of one class; ``1.0`` disables the check.
        ignore_index: Label of ignored pixels, left out of the class shares.
        max_checks: Boxes checked before one is taken unchecked (10 in the original).
    """

    def __init__(
        self,
        crop_size: Sequence[int],
        cat_max_ratio: float,
        ignore_index: int = IGNORE_INDEX,
        max_checks: int = 10,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.cat_max_ratio = float(cat_max_ratio)
        self.ignore_index = int(ignore_index)
        self.max_checks = int(max_checks)

    @property
    def targets_as_params(self) -> list[str]:
        return ["mask"]

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        box = choose_crop_box(
            data["mask"],
            self.crop_size,
            self.cat_max_ratio,
            self.ignore_index,
            self.random_generator,
            self.max_checks,
        )
        return {"box": box}

    def apply(self, img: np.ndarray, box: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        y1, y2, x1, x2 = box
        return img[y1:y2, x1:x2]

    def apply_to_mask(
        self, mask: np.ndarray, box: tuple[int, int, int, int], **params: Any
    ) -> np.ndarray:
        y1, y2, x1, x2 = box
        return mask[y1:y2, x1:x2]

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("crop_size", "cat_max_ratio", "ignore_index", "max_checks")
