"""The network input of one pass, built in the original's order of operations.

Per pass (one scale ratio ``r``, flipped or not), :func:`pass_input` follows the mmseg 0.21 test
pipeline (docs/reference.md §8): keep-ratio ``Resize`` of the original uint8 image, then
``ResizeToMultiple`` of *that* uint8 image (two interpolations, docs/pitfalls.md C2), the flip,
and ``Normalize`` with the same OpenCV calls and dtypes as mmcv (:func:`normalize`,
docs/pitfalls.md M1). `vanseg.inference.passes` runs the network on these inputs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import torch

from vanseg.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    rescale_size,
    resize_to_multiple_size,
)
from vanseg.inference.protocol import InferenceProtocol

__all__ = [
    "as_uint8_rgb",
    "keep_ratio_size",
    "multiple_size",
    "normalize",
    "pass_input",
    "pass_inputs",
    "prepare_image",
]


def keep_ratio_size(height: int, width: int, scale: Sequence[int]) -> tuple[int, int]:
    """``(h, w)`` after mmcv's keep-ratio rescale into ``scale = (long, short)`` bounds.

    The factor is ``min(long / max(h, w), short / min(h, w))``; each side becomes
    ``int(side * factor + 0.5)``.
    """
    width, height = rescale_size(width, height, scale)
    return height, width


def multiple_size(height: int, width: int, divisor: int) -> tuple[int, int]:
    """``(ceil(h / d) * d, ceil(w / d) * d)``, the target of ``ResizeToMultiple``."""
    width, height = resize_to_multiple_size(width, height, divisor)
    return height, width


def _rescaled_size(
    height: int, width: int, protocol: InferenceProtocol, ratio: float
) -> tuple[int, int]:
    """Size after ``Resize(keep_ratio=True)`` at ``ratio`` (before any ResizeToMultiple).

    A side that the formula rounds to 0 pixels (a 1 x 5000 panorama into (2048, 512)) is kept
    at 1 pixel by `rescale_size`; the original fails in ``cv2.resize`` there.
    """
    if protocol.base_scale is not None:
        # MultiScaleFlipAug scales the (w, h) = (2048, 512) bounds and truncates with int().
        bounds = (int(protocol.base_scale[0] * ratio), int(protocol.base_scale[1] * ratio))
        return keep_ratio_size(height, width, bounds)
    if ratio != 1.0:
        return keep_ratio_size(height, width, (ratio * max(height, width),) * 2)
    return height, width


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """mmcv ``imresize``: cv2 bilinear on the uint8 image (a same-size resize is a copy)."""
    if size == image.shape[:2]:
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def normalize(
    image: np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """RGB uint8 ``(H, W, 3)`` -> normalised float32 ``(1, 3, H, W)``, as the original computes it.

    mmseg's ``Normalize`` stores ``mean`` and ``std`` as float32 arrays; mmcv's ``imnormalize_``
    converts the image to float32, then calls ``cv2.subtract`` with the float64 of that mean and
    ``cv2.multiply`` with ``1 / float64(std)``. These are the same calls with the same dtypes,
    so whatever an OpenCV release does with them (5.0 forms the product in float64, 5.1 in
    float32) it does for both. (The BGR -> RGB swap the original does first is exact; ``image``
    is RGB already.)

    One deliberate difference: OpenCV 5.1 mishandles a one-pixel-wide 3-channel array (it
    neither writes in place nor returns the right shape, docs/pitfalls.md M1c), so the original
    feeds such an image unnormalised. Here the image is viewed as one row of pixels, ``(1, N,
    3)``, which OpenCV processes like the contiguous ``(H, W, 3)`` array (elementwise ops run on
    a continuous array as one long row), and a single pixel is doubled first.
    """
    height, width = image.shape[:2]
    mean32 = np.array(mean, dtype=np.float32)
    std32 = np.array(std, dtype=np.float32)
    mean64 = np.float64(mean32.reshape(1, -1))
    stdinv = 1 / np.float64(std32.reshape(1, -1))
    pixels = np.array(image, dtype=np.float32).reshape(1, height * width, 3)  # a fresh copy
    if pixels.shape[1] == 1:
        pixels = np.repeat(pixels, 2, axis=1)
    _in_place(cv2.subtract(pixels, mean64, pixels), pixels)
    _in_place(cv2.multiply(pixels, stdinv, pixels), pixels)
    out = pixels[:, : height * width].reshape(height, width, 3)
    return torch.from_numpy(out).permute(2, 0, 1).unsqueeze(0)


def _in_place(result: np.ndarray, target: np.ndarray) -> None:
    if result is not target:
        raise RuntimeError(
            f"OpenCV {cv2.__version__} did not write a {target.shape} float32 array in place; "
            "install the versions in requirements.lock (docs/pitfalls.md M1c)"
        )


def as_uint8_rgb(image: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {tuple(image.shape)}; "
            "use predict_probs_tensor for already normalised tensors"
        )
    if 0 in image.shape:
        raise ValueError(f"the image is empty, shape {tuple(image.shape)}; pass at least 1x1 pixel")
    return image


def pass_input(
    image: np.ndarray | torch.Tensor,
    protocol: InferenceProtocol,
    ratio: float = 1.0,
    flip: bool = False,
) -> torch.Tensor:
    """The network input ``(1, 3, h, w)`` of one pass, bit for bit as the original builds it.

    Keep-ratio resize of the original uint8 image, ResizeToMultiple of *that* uint8 result,
    flip, mmcv normalisation (see the module docstring). Every caller (whole, slide, TTA,
    ``eval.py``, ``predict.py``) builds its inputs here.
    """
    rgb = as_uint8_rgb(image)
    rgb = _resize(rgb, _rescaled_size(rgb.shape[0], rgb.shape[1], protocol, ratio))
    if protocol.size_divisor:
        rgb = _resize(rgb, multiple_size(rgb.shape[0], rgb.shape[1], protocol.size_divisor))
    if flip:
        rgb = rgb[:, ::-1]
    return normalize(rgb, protocol.mean, protocol.std)


def pass_inputs(
    image: np.ndarray | torch.Tensor, protocol: InferenceProtocol
) -> Iterator[tuple[bool, torch.Tensor]]:
    """``(flipped, network input (1, 3, h, w))`` of every pass, in the protocol's order.

    Ratio by ratio, the unflipped pass before the flipped one: the order in which
    `vanseg.inference.passes` runs them (and so draws the Ham heads' random bases).
    """
    for ratio in protocol.scales:
        for flip in (False, True) if protocol.flip else (False,):
            yield flip, pass_input(image, protocol, ratio, flip)


def prepare_image(
    image: np.ndarray | torch.Tensor, protocol: InferenceProtocol, ratio: float = 1.0
) -> torch.Tensor:
    """The unflipped network input of one pass: :func:`pass_input` with ``flip=False``."""
    return pass_input(image, protocol, ratio)
