"""Test-time inference as the original runs it: whole image or sliding window, optional TTA.

One set of pure functions serves validation during training, ``eval.py``, ``predict.py`` and
the tools (docs/reference.md §8, docs/pitfalls.md C). Every function returns class *probabilities*
``(B, K, H, W)`` at the requested output size (the original image / label size), like mmseg's
``EncoderDecoder.inference``, which always applies a softmax; argmax gives the prediction.

Per pass (one scale ratio ``r``, flipped or not), :func:`pass_input` builds the network input
in the original's order of operations (mmseg 0.21 test pipeline, docs/reference.md §8):

1. ``Resize(keep_ratio=True)``: the *original* RGB uint8 image is resized (cv2 bilinear,
   mmcv's ``int(x * f + 0.5)`` rounding) to fit ``(int(2048 r), int(512 r))``; the result is a
   uint8 image again.
2. ``ResizeToMultiple(d)`` (if ``size_divisor``): *that uint8 image* is resized once more to
   ``ceil(h / d) * d x ceil(w / d) * d``. Two interpolations with uint8 rounding in between,
   never one resize from the original (docs/pitfalls.md C2).
3. ``RandomFlip``: horizontal flip of the uint8 image.
4. ``Normalize``: mmseg's ``Normalize`` and mmcv's ``imnormalize_``, the same OpenCV calls with
   the same dtypes (:func:`normalize`), so the inputs match the original bit for bit on every
   OpenCV release, whichever way that release rounds (docs/pitfalls.md M1).

Then logits at the network input size: one forward (``whole``) or overlapping crops whose
logits are averaged (``slide``, mmseg ``slide_inference``); logits resized bilinearly
(``align_corners=False``) to the output size, softmax over classes, un-flip.

Probabilities are averaged over all passes. The model must be in eval mode; for the Ham heads
set their ``eval_seed`` (:func:`set_eval_seed`) if results must be reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vanseg.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    rescale_size,
    resize_to_multiple_size,
)
from vanseg.evaluation.protocol import (
    AUG_TEST_NAME,
    MS_RATIOS,
    InferenceProtocol,
    resolve_protocol,
)
from vanseg.models.layers.matrix_decomposition import NMF2D

__all__ = [
    "AUG_TEST_NAME",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MS_RATIOS",
    "InferenceProtocol",
    "keep_ratio_size",
    "multiple_size",
    "normalize",
    "pass_input",
    "predict_mask",
    "predict_probs",
    "predict_probs_tensor",
    "prepare_image",
    "resolve_protocol",
    "set_eval_seed",
    "slide_logits",
]


def set_eval_seed(model: nn.Module, seed: int | None) -> int:
    """Set ``eval_seed`` on every NMF module (Ham heads): deterministic eval bases, or ``None``.

    Returns the number of modules changed (0 for heads without NMF).
    """
    modules = [m for m in model.modules() if isinstance(m, NMF2D)]
    for module in modules:
        module.eval_seed = seed
    return len(modules)


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
    """Size after ``Resize(keep_ratio=True)`` at ``ratio`` (before any ResizeToMultiple)."""
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


def _as_uint8_rgb(image: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {tuple(image.shape)}; "
            "use predict_probs_tensor for already normalised tensors"
        )
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
    rgb = _as_uint8_rgb(image)
    rgb = _resize(rgb, _rescaled_size(rgb.shape[0], rgb.shape[1], protocol, ratio))
    if protocol.size_divisor:
        rgb = _resize(rgb, multiple_size(rgb.shape[0], rgb.shape[1], protocol.size_divisor))
    if flip:
        rgb = rgb[:, ::-1]
    return normalize(rgb, protocol.mean, protocol.std)


def prepare_image(
    image: np.ndarray | torch.Tensor, protocol: InferenceProtocol, ratio: float = 1.0
) -> torch.Tensor:
    """The unflipped network input of one pass: :func:`pass_input` with ``flip=False``."""
    return pass_input(image, protocol, ratio)


def slide_logits(model: nn.Module, images: torch.Tensor, crop: int, stride: int) -> torch.Tensor:
    """Sliding-window logits ``(B, K, H, W)``: mmseg ``slide_inference`` without the rescale.

    Windows start every ``stride`` pixels; the last one in each direction is shifted back to
    end at the border, and an axis shorter than ``crop`` gets one window of its own length.
    Each pixel's logits are averaged over the windows that cover it.
    """
    _, _, height, width = images.shape
    rows = max(height - crop + stride - 1, 0) // stride + 1
    cols = max(width - crop + stride - 1, 0) // stride + 1
    logits: torch.Tensor | None = None
    count = images.new_zeros((1, 1, height, width))
    for row in range(rows):
        for col in range(cols):
            y2, x2 = min(row * stride + crop, height), min(col * stride + crop, width)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            window = model(images[:, :, y1:y2, x1:x2])  # (B, K, y2 - y1, x2 - x1)
            if logits is None:
                logits = window.new_zeros((images.shape[0], window.shape[1], height, width))
            logits[:, :, y1:y2, x1:x2] += window
            count[:, :, y1:y2, x1:x2] += 1
    assert logits is not None and bool((count > 0).all())
    return logits / count


def _logits(model: nn.Module, images: torch.Tensor, protocol: InferenceProtocol) -> torch.Tensor:
    if protocol.mode == "slide":
        return slide_logits(model, images, protocol.crop, protocol.stride)
    return model(images)


def _probs(
    model: nn.Module,
    inputs: torch.Tensor,
    flipped: bool,
    out_size: tuple[int, int],
    protocol: InferenceProtocol,
) -> torch.Tensor:
    """Probabilities at ``out_size`` of prepared (possibly flipped) inputs, un-flipped."""
    logits = _logits(model, inputs, protocol)
    logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
    probs = logits.float().softmax(dim=1)
    return probs.flip(-1) if flipped else probs


def _pass_probs(
    model: nn.Module,
    images: torch.Tensor,
    flip: bool,
    out_size: tuple[int, int],
    protocol: InferenceProtocol,
) -> torch.Tensor:
    return _probs(model, images.flip(-1) if flip else images, flip, out_size, protocol)


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    protocol: InferenceProtocol,
    out_size: Sequence[int] | None = None,
) -> torch.Tensor:
    """Class probabilities ``(1, K, H, W)`` for one original RGB uint8 image ``(H, W, 3)``.

    Every pass resizes the original image itself, so multi-scale matches the original exactly.

    Args:
        model: ``(B, 3, h, w) -> logits (B, K, h, w)``, in eval mode.
        image: RGB uint8, numpy or tensor, at its original resolution.
        protocol: Resizing, mode and TTA.
        out_size: ``(H, W)`` of the output; defaults to the image's own size (the label size).
    """
    rgb = _as_uint8_rgb(image)
    size = tuple(out_size) if out_size is not None else rgb.shape[:2]
    device = _device(model)
    total: torch.Tensor | None = None
    for ratio in protocol.scales:
        for flip in (False, True) if protocol.flip else (False,):
            inputs = pass_input(rgb, protocol, ratio, flip).to(device)
            probs = _probs(model, inputs, flip, size, protocol)
            total = probs if total is None else total + probs
    assert total is not None
    return total / protocol.passes


@torch.no_grad()
def predict_probs_tensor(
    model: nn.Module,
    images: torch.Tensor,
    out_size: Sequence[int],
    protocol: InferenceProtocol | None = None,
) -> torch.Tensor:
    """Probabilities ``(B, K, H, W)`` for inputs that the data pipeline already prepared.

    For validation batches: ``images`` are normalised and already resized for a single scale
    (e.g. keep-ratio into (2048, 512)); the protocol's resizing fields are not applied again.
    Only its ``mode``, ``crop``, ``stride`` and ``flip`` are used.

    Raises:
        ValueError: The protocol asks for several scales, which need the original image
            (use :func:`predict_probs`).
    """
    protocol = protocol or InferenceProtocol()
    if protocol.scales != (1.0,):
        raise ValueError(
            f"multi-scale inference ({protocol.describe()}) resizes the original image; "
            "call predict_probs with the original uint8 image instead"
        )
    images = images.to(_device(model))
    size = (int(out_size[0]), int(out_size[1]))
    probs = _pass_probs(model, images, False, size, protocol)
    if protocol.flip:
        probs = (probs + _pass_probs(model, images, True, size, protocol)) / 2
    return probs


def predict_mask(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    protocol: InferenceProtocol,
    out_size: Sequence[int] | None = None,
) -> torch.Tensor:
    """Predicted class indices ``(H, W)`` (int64) for one original RGB uint8 image."""
    return predict_probs(model, image, protocol, out_size)[0].argmax(dim=0)
