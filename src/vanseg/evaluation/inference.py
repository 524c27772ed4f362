"""Test-time inference as the original runs it: whole image or sliding window, optional TTA.

One set of pure functions serves validation during training, ``eval.py``, ``predict.py`` and
the tools (docs/reference.md §8, docs/pitfalls.md C). Every function returns class *probabilities*
``(B, K, H, W)`` at the requested output size (the original image / label size), like mmseg's
``EncoderDecoder.inference``, which always applies a softmax; argmax gives the prediction.

Per pass (one scale ratio ``r``, flipped or not):

1. From the *original* RGB uint8 image: keep-ratio resize (cv2 bilinear, mmcv's rounding) to
   fit ``(int(2048 r), int(512 r))``; optionally resize (not pad) to a multiple of 32
   (``ResizeToMultiple``); horizontal flip; ImageNet normalisation.
2. Logits at the network input size: one forward (``whole``) or overlapping crops whose logits
   are averaged (``slide``, mmseg ``slide_inference``).
3. Logits resized bilinearly (``align_corners=False``) to the output size, softmax over
   classes, un-flip.

Probabilities are averaged over all passes. The model must be in eval mode; for the Ham heads
set their ``eval_seed`` (:func:`set_eval_seed`) if results must be reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

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
from vanseg.models.layers.matrix_decomposition import NMF2D

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MS_RATIOS",
    "InferenceProtocol",
    "keep_ratio_size",
    "multiple_size",
    "normalize",
    "predict_mask",
    "predict_probs",
    "predict_probs_tensor",
    "prepare_image",
    "resolve_protocol",
    "set_eval_seed",
    "slide_logits",
]

#: Scale ratios of the original's multi-scale test (``test.py --aug-test``).
MS_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)

Mode = Literal["whole", "slide"]


@dataclass(frozen=True)
class InferenceProtocol:
    """How to turn an image into class probabilities; printed and stored with every result.

    Args:
        mode: ``"whole"`` (one forward per pass) or ``"slide"`` (crop windows, logits averaged).
        scales: Ratios ``r`` of ``base_scale``; one pass per ratio (and per flip).
        flip: Add a horizontally flipped pass for every ratio.
        base_scale: ``(long, short)`` bounds of the keep-ratio resize at ``r = 1``; ``None``
            keeps the image size (times ``r``).
        size_divisor: Resize (not pad) each input to ``ceil(h / d) * d x ceil(w / d) * d``
            (the original's ``ResizeToMultiple(32)`` in the ``ade20k.py`` test pipeline).
        crop: Side of the square windows in ``slide`` mode.
        stride: Step between windows in ``slide`` mode (at most ``crop``).
    """

    mode: Mode = "whole"
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    base_scale: tuple[int, int] | None = (2048, 512)
    size_divisor: int | None = None
    crop: int = 512
    stride: int = 341
    mean: tuple[float, float, float] = field(default=IMAGENET_MEAN, repr=False)
    std: tuple[float, float, float] = field(default=IMAGENET_STD, repr=False)

    def __post_init__(self) -> None:
        # Accept lists from configs; the dataclass stays hashable and immutable.
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if self.base_scale is not None:
            object.__setattr__(self, "base_scale", tuple(int(s) for s in self.base_scale))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if self.mode not in ("whole", "slide"):
            raise ValueError(f"inference mode must be 'whole' or 'slide', got {self.mode!r}")
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ValueError(f"scales must be positive ratios, got {self.scales}")
        if self.base_scale is not None and (len(self.base_scale) != 2 or min(self.base_scale) <= 0):
            raise ValueError(f"base_scale must be (long, short) > 0, got {self.base_scale}")
        if self.size_divisor is not None and self.size_divisor <= 0:
            raise ValueError(f"size_divisor must be positive or None, got {self.size_divisor}")
        if self.crop <= 0 or not 0 < self.stride <= self.crop:
            # A stride above the crop would leave pixels that no window covers.
            raise ValueError(f"need 0 < stride <= crop, got crop={self.crop} stride={self.stride}")

    @classmethod
    def ms_flip(cls, **kwargs: Any) -> InferenceProtocol:
        """The published protocol: ratios 0.5..1.75 x horizontal flip (12 passes)."""
        return cls(**{"scales": MS_RATIOS, "flip": True, **kwargs})

    @property
    def passes(self) -> int:
        """Forward passes (or window sets) per image."""
        return len(self.scales) * (2 if self.flip else 1)

    def describe(self) -> str:
        """One line for logs and result files, e.g. ``whole | keep-ratio (2048, 512) | ...``."""
        parts = [
            self.mode if self.mode == "whole" else f"slide crop {self.crop} stride {self.stride}",
            f"keep-ratio {self.base_scale}" if self.base_scale else "original size",
        ]
        if self.size_divisor:
            parts.append(f"resize to multiple of {self.size_divisor}")
        if self.scales != (1.0,):
            parts.append("ratios " + ", ".join(f"{s:g}" for s in self.scales))
        if self.flip:
            parts.append("+ flip")
        if self.passes > 1:
            parts.append(f"softmax averaged over {self.passes} passes")
        return " | ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready fields (stored next to the numbers they produced)."""
        out = asdict(self)
        for key in ("scales", "base_scale", "mean", "std"):
            out[key] = list(out[key]) if out[key] is not None else None
        return out


def resolve_protocol(options: Mapping[str, Any], tta: str | None = None) -> InferenceProtocol:
    """Build a protocol from config fields; ``tta="ms_flip"`` sets the published ratios + flip.

    Args:
        options: :class:`InferenceProtocol` fields (``mode``, ``crop``, ...), e.g. the
            ``inference`` node of a config as a plain dict.
        tta: ``None``/``"none"`` (use ``options`` as given) or ``"ms_flip"``.
    """
    protocol = InferenceProtocol(**dict(options))
    if tta in (None, "none"):
        return protocol
    if tta == "ms_flip":
        return replace(protocol, scales=MS_RATIOS, flip=True)
    raise ValueError(f"unknown tta {tta!r}: use null (none) or 'ms_flip'")


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


def _input_size(
    height: int, width: int, protocol: InferenceProtocol, ratio: float
) -> tuple[int, int]:
    if protocol.base_scale is not None:
        # MultiScaleFlipAug scales the (w, h) = (2048, 512) bounds and truncates with int().
        bounds = (int(protocol.base_scale[0] * ratio), int(protocol.base_scale[1] * ratio))
        height, width = keep_ratio_size(height, width, bounds)
    elif ratio != 1.0:
        height, width = keep_ratio_size(height, width, (ratio * max(height, width),) * 2)
    if protocol.size_divisor:
        height, width = multiple_size(height, width, protocol.size_divisor)
    return height, width


def normalize(
    image: np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """RGB uint8 ``(H, W, 3)`` -> normalised float32 ``(1, 3, H, W)``."""
    x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return ((x - mean_t) / std_t).unsqueeze(0)


def _as_uint8_rgb(image: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {tuple(image.shape)}; "
            "use predict_probs_tensor for already normalised tensors"
        )
    return image


def prepare_image(
    image: np.ndarray | torch.Tensor, protocol: InferenceProtocol, ratio: float = 1.0
) -> torch.Tensor:
    """The network input of one pass (before flipping): resized and normalised (1, 3, h, w).

    Resizing works on the uint8 image with cv2 bilinear interpolation, as mmcv does.
    """
    image = _as_uint8_rgb(image)
    height, width = _input_size(image.shape[0], image.shape[1], protocol, ratio)
    if (height, width) != image.shape[:2]:
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return normalize(image, protocol.mean, protocol.std)


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


def _pass_probs(
    model: nn.Module,
    images: torch.Tensor,
    flip: bool,
    out_size: tuple[int, int],
    protocol: InferenceProtocol,
) -> torch.Tensor:
    if flip:
        images = images.flip(-1)
    logits = _logits(model, images, protocol)
    logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
    probs = logits.float().softmax(dim=1)
    return probs.flip(-1) if flip else probs


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
        inputs = prepare_image(rgb, protocol, ratio).to(device)
        for flip in (False, True) if protocol.flip else (False,):
            probs = _pass_probs(model, inputs, flip, size, protocol)
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
