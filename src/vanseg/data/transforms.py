"""Training and evaluation transforms equivalent to the original mmseg 0.21 ADE20K pipeline.

Train (docs/reference.md §8, docs/pitfalls.md E): keep-ratio random rescale -> random crop with
``cat_max_ratio`` -> horizontal flip -> photometric distortion (uint8) -> normalise -> pad
bottom/right (image 0 after normalisation, label ``ignore_index``). Albumentations provides the
flip, the normalisation and the pad; the steps it does not reproduce exactly are small custom
transforms, written so that their random draws come from albumentations' per-transform
generators (one seeded stream per sample, see `TrainTransform`).

Evaluation: keep-ratio resize into ``scale`` (short side 512 unless the long side would pass
2048), an optional resize (not pad) to a multiple of ``size_divisor``, normalise. The label is
returned untouched: metrics use the original-resolution annotation (docs/pitfalls.md C1).

The steps live in `vanseg.data.geometric` (rescale, crop) and `vanseg.data.photometric`; this
module composes them and re-exports them, so ``from vanseg.data.transforms import ...`` keeps
working. Images are RGB (the original works on BGR; see `vanseg.data.photometric`).
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np

from vanseg.data.classes import IGNORE_INDEX
from vanseg.data.geometric import (
    RandomCropCatMax,
    RandomRescale,
    choose_crop_box,
    crop_box_ok,
    rescale_size,
    resize_image,
    resize_to_multiple_size,
)
from vanseg.data.photometric import PhotoMetricDistortion, photometric_distortion

__all__ = [
    "ADE20K_SCALE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EvalTransform",
    "PhotoMetricDistortion",
    "RandomCropCatMax",
    "RandomRescale",
    "TRAIN_PIPELINE_OPTIONS",
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
        self.scale, self.ratio_range = tuple(scale), tuple(ratio_range)
        self.crop_size = (crop_h, crop_w)
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


#: The options of `TrainTransform` a data config sets (all but ``ignore_index`` and ``seed``,
#: which the data module passes itself); the keys of conf/data/pipeline/.
TRAIN_PIPELINE_OPTIONS = tuple(
    name
    for name in inspect.signature(TrainTransform).parameters
    if name not in ("ignore_index", "seed")
)


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
            image = resize_image(image, rescale_size(width, height, self.scale), nearest=False)
        if self.size_divisor:
            size = resize_to_multiple_size(image.shape[1], image.shape[0], self.size_divisor)
            image = resize_image(image, size, nearest=False)
        return self.normalize.apply(image), mask
