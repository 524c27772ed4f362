"""Training and evaluation transforms equivalent to the original mmseg 0.21 ADE20K pipeline.

Train (docs/reference.md §8, docs/pitfalls.md E): keep-ratio random rescale -> random crop with
``cat_max_ratio`` -> horizontal flip -> photometric distortion (uint8) -> normalise -> pad
bottom/right (image 0 after normalisation, label ``ignore_index``). Albumentations provides the
flip, the normalisation and the pad; the steps it does not reproduce exactly are small custom
transforms below, written so that their random draws come from albumentations' per-transform
generators (one seeded stream per sample, see `TrainTransform`).

Evaluation: keep-ratio resize into ``scale`` (short side 512 unless the long side would pass
2048), an optional resize (not pad) to a multiple of ``size_divisor``, normalise. The label is
returned untouched: metrics use the original-resolution annotation (docs/pitfalls.md C1).

Images are RGB here while the original works on BGR; the colour-space conversions below use the
RGB codes, so every step gives the original's result for the same pixels.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np

from vanseg.data.classes import IGNORE_INDEX

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EvalTransform",
    "PhotoMetricDistortion",
    "RandomCropCatMax",
    "RandomRescale",
    "TrainTransform",
    "choose_crop_box",
    "crop_box_ok",
    "photometric_distortion",
    "rescale_size",
    "resize_to_multiple_size",
]

#: ImageNet mean/std in 0..255 RGB units, as in the original ``Normalize`` (docs/reference.md §8).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
#: ``(long, short)`` edge bounds of ADE20K's resize at ratio 1, also the evaluation scale.
ADE20K_SCALE = (2048, 512)


def rescale_size(width: int, height: int, scale: Sequence[int]) -> tuple[int, int]:
    """Keep-ratio target size ``(w, h)`` that fits ``scale`` as mmcv's ``rescale_size`` does.

    The factor is ``min(max(scale) / long side, min(scale) / short side)`` and each side becomes
    ``int(side * factor + 0.5)``.
    """
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(width, height), short_edge / min(width, height))
    return int(width * factor + 0.5), int(height * factor + 0.5)


def resize_to_multiple_size(width: int, height: int, divisor: int) -> tuple[int, int]:
    """``(ceil(w / d) * d, ceil(h / d) * d)``: the size ``ResizeToMultiple`` resizes to."""
    return math.ceil(width / divisor) * divisor, math.ceil(height / divisor) * divisor


def _resize_pair(img: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    if (img.shape[1], img.shape[0]) == size:
        return img
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(img, size, interpolation=interpolation)


class RandomRescale(A.DualTransform):
    """Keep-ratio rescale to a random multiple of ``scale`` (mmseg ``Resize`` with ``ratio_range``).

    Draws ``r ~ U(ratio_range)``, targets ``(int(scale[0] * r), int(scale[1] * r))`` and resizes
    with `rescale_size`: the image bilinearly, the mask with nearest neighbour.

    Args:
        scale: ``(long, short)`` edge bounds at ratio 1, ``(2048, 512)`` for ADE20K.
        ratio_range: ``(low, high)`` of the uniform ratio.
    """

    def __init__(
        self,
        scale: Sequence[int] = ADE20K_SCALE,
        ratio_range: Sequence[float] = (0.5, 2.0),
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
        return _resize_pair(img, size, nearest=False)

    def apply_to_mask(self, mask: np.ndarray, size: tuple[int, int], **params: Any) -> np.ndarray:
        return _resize_pair(mask, size, nearest=True)

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
        crop_size: Sequence[int] = (512, 512),
        cat_max_ratio: float = 0.75,
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


class TrainTransform:
    """The full training pipeline (docs/reference.md §8 steps 3-8) as one callable.

    ``transform(image, mask, seed)`` takes an RGB uint8 image ``(H, W, 3)`` and a uint8 label
    ``(H, W)`` already reduced, and returns a float32 image ``(crop_h, crop_w, 3)`` and a uint8
    label ``(crop_h, crop_w)``. With a ``seed`` every random draw of this call comes from one
    generator seeded with it, so the result depends only on the input and the seed (whatever
    the worker or the resume point); without one the pipeline's own stream is used.

    Args:
        scale: ``(long, short)`` edge bounds of the rescale at ratio 1.
        ratio_range: Range of the random rescale ratio.
        crop_size: ``(height, width)`` of the crop and of the padded output.
        cat_max_ratio: Largest share of one class in a crop (1.0 disables the check).
        crop_max_checks: Crop boxes checked before one is taken unchecked.
        flip_prob: Probability of a horizontal flip.
        brightness_delta: See `PhotoMetricDistortion`.
        contrast_range: See `PhotoMetricDistortion`.
        saturation_range: See `PhotoMetricDistortion`.
        hue_delta: See `PhotoMetricDistortion`.
        mean: Per-channel RGB mean in 0..255 units.
        std: Per-channel RGB std in 0..255 units.
        ignore_index: Label of ignored pixels, also the label padding value.
        seed: Seed of the pipeline's own stream (used only for calls without a seed).
    """

    def __init__(
        self,
        scale: Sequence[int] = ADE20K_SCALE,
        ratio_range: Sequence[float] = (0.5, 2.0),
        crop_size: Sequence[int] = (512, 512),
        cat_max_ratio: float = 0.75,
        crop_max_checks: int = 10,
        flip_prob: float = 0.5,
        brightness_delta: float = 32,
        contrast_range: Sequence[float] = (0.5, 1.5),
        saturation_range: Sequence[float] = (0.5, 1.5),
        hue_delta: int = 18,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        ignore_index: int = IGNORE_INDEX,
        seed: int | None = None,
    ) -> None:
        crop_h, crop_w = int(crop_size[0]), int(crop_size[1])
        self.mean, self.std = tuple(mean), tuple(std)
        self.compose = A.Compose(
            [
                RandomRescale(scale, ratio_range),
                RandomCropCatMax((crop_h, crop_w), cat_max_ratio, ignore_index, crop_max_checks),
                A.HorizontalFlip(p=flip_prob),
                PhotoMetricDistortion(
                    brightness_delta, contrast_range, saturation_range, hue_delta
                ),
                # max_pixel_value=1: mean/std are already in 0..255 units.
                A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=1.0),
                # After Normalize, so padded pixels are 0 in normalised space (docs/pitfalls.md E).
                A.PadIfNeeded(
                    min_height=crop_h,
                    min_width=crop_w,
                    position="top_left",
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=0,
                    fill_mask=ignore_index,
                ),
            ],
            seed=seed,
        )

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, seed: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if seed is not None:
            # One shared stream for all steps: albumentations' set_random_seed would give every
            # step an identically seeded generator, correlating e.g. flip and rescale draws.
            self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
        out = self.compose(image=image, mask=mask)
        return out["image"], out["mask"]


class EvalTransform:
    """Evaluation pipeline: keep-ratio resize, optional resize to a multiple, normalise.

    ``transform(image, mask)`` returns the float32 normalised image and the mask unchanged, at
    the original resolution (labels are never resized for evaluation).

    Args:
        scale: ``(long, short)`` bounds of the keep-ratio resize; ``None`` keeps the size.
        size_divisor: Bilinear resize to ``ceil(h / d) * d x ceil(w / d) * d`` afterwards (the
            original's ``ResizeToMultiple``, a resize, not a pad); ``None`` skips it.
        mean: Per-channel RGB mean in 0..255 units.
        std: Per-channel RGB std in 0..255 units.
    """

    def __init__(
        self,
        scale: Sequence[int] | None = ADE20K_SCALE,
        size_divisor: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.scale = tuple(int(s) for s in scale) if scale is not None else None
        self.size_divisor = size_divisor
        self.mean, self.std = tuple(mean), tuple(std)
        self.normalize = A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=1.0)

    def image_size(self, width: int, height: int) -> tuple[int, int]:
        """The ``(w, h)`` an image of this size is resized to."""
        if self.scale is not None:
            width, height = rescale_size(width, height, self.scale)
        if self.size_divisor:
            width, height = resize_to_multiple_size(width, height, self.size_divisor)
        return width, height

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, seed: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        height, width = image.shape[:2]
        if self.scale is not None:
            image = _resize_pair(image, rescale_size(width, height, self.scale), nearest=False)
        if self.size_divisor:
            size = resize_to_multiple_size(image.shape[1], image.shape[0], self.size_divisor)
            image = _resize_pair(image, size, nearest=False)
        return self.normalize.apply(image), mask
