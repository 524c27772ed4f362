"""An independent re-statement of the original (mmseg 0.21 / mmcv 1.x) test pipeline and metric.

Written from docs/reference.md §8-§9 with cv2, numpy and torch only, and no vanseg imports, the
way ``tests/models/mmseg_reference.py`` restates the model. It follows the original's own calls:

* ``LoadImageFromFile``: ``cv2.imdecode(..., IMREAD_COLOR)``, a BGR uint8 image;
* ``MultiScaleFlipAug``: scales ``(int(2048 r), int(512 r))`` for every ratio ``r``;
* ``Resize(keep_ratio=True)``: mmcv ``rescale_size`` and ``imresize`` (cv2 bilinear);
* ``ResizeToMultiple(32)``: mmcv ``imresize_to_multiple`` on the uint8 result of Resize;
* ``RandomFlip``: ``np.flip`` along the width;
* ``Normalize(to_rgb=True)``: mean and std kept as float32 arrays; mmcv ``imnormalize_``:
  float32 copy, BGR->RGB, ``cv2.subtract`` of the float64 mean, ``cv2.multiply`` by the
  float64 ``1 / std``, all in place;
* ``ImageToTensor``: HWC -> CHW;
* ``EncoderDecoder.inference``: per pass, logits resized bilinearly (``align_corners=False``)
  to the original size, softmax, un-flip; probabilities summed over passes, then argmax;
* the metric: per-image intersection / union / label / prediction histograms over the
  non-ignored pixels, summed over the dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

MEAN = (123.675, 116.28, 103.53)  # RGB
STD = (58.395, 57.12, 57.375)
RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def imread_bgr(path: str | Path) -> np.ndarray:
    """mmcv ``imfrombytes(flag='color', backend='cv2')``."""
    return cv2.imdecode(np.frombuffer(Path(path).read_bytes(), np.uint8), cv2.IMREAD_COLOR)


def mmcv_rescale_size(w: int, h: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv ``rescale_size`` with a (long, short) tuple: the new ``(w, h)``."""
    max_long, max_short = max(scale), min(scale)
    factor = min(max_long / max(h, w), max_short / min(h, w))
    return int(w * float(factor) + 0.5), int(h * float(factor) + 0.5)


def mmcv_imresize(img: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    return cv2.resize(img, size_wh, interpolation=cv2.INTER_LINEAR)


def resize_keep_ratio(img: np.ndarray, scale_wh: tuple[int, int]) -> np.ndarray:
    h, w = img.shape[:2]
    return mmcv_imresize(img, mmcv_rescale_size(w, h, scale_wh))


def resize_to_multiple(img: np.ndarray, divisor: int) -> np.ndarray:
    h, w = img.shape[:2]
    size = (int(np.ceil(w / divisor)) * divisor, int(np.ceil(h / divisor)) * divisor)
    return mmcv_imresize(img, size)


def imnormalize_bgr(img: np.ndarray) -> np.ndarray:
    """mmseg ``Normalize.__call__`` then mmcv ``imnormalize`` / ``imnormalize_``, as written.

    ``Normalize.__init__`` keeps ``np.array(mean, dtype=np.float32)`` and the same for std;
    ``imnormalize`` copies the image to float32; ``imnormalize_`` takes ``np.float64`` of the
    reshaped mean and ``1 / np.float64`` of the reshaped std and calls cvtColor, subtract and
    multiply in place, ignoring what they return.
    """
    mean_f32 = np.array(MEAN, dtype=np.float32)
    std_f32 = np.array(STD, dtype=np.float32)
    out = img.copy().astype(np.float32)
    mean = np.float64(mean_f32.reshape(1, -1))
    stdinv = 1 / np.float64(std_f32.reshape(1, -1))
    cv2.cvtColor(out, cv2.COLOR_BGR2RGB, out)
    cv2.subtract(out, mean, out)
    cv2.multiply(out, stdinv, out)
    return out


def subtract_is_in_place(height: int, width: int) -> bool:
    """Whether this OpenCV writes ``cv2.subtract(a, mean, a)`` into ``a`` for a float32
    ``(height, width, 3)`` array (OpenCV 5.1 does not for width 1: docs/pitfalls.md M1c)."""
    a = np.zeros((height, width, 3), np.float32)
    return cv2.subtract(a, np.ones((1, 3)), a) is a and bool((a == -1).all())


def pass_inputs(
    bgr: np.ndarray,
    ratios: Sequence[float] = (1.0,),
    flip: bool = False,
    size_divisor: int | None = 32,
    img_scale: tuple[int, int] = (2048, 512),
) -> list[tuple[bool, torch.Tensor]]:
    """``(flipped, input (1, 3, h, w) float32)`` of every pass, in MultiScaleFlipAug's order."""
    out = []
    for ratio in ratios:
        scale = (int(img_scale[0] * ratio), int(img_scale[1] * ratio))
        for flipped in (False, True) if flip else (False,):
            img = resize_keep_ratio(bgr, scale)
            if size_divisor:
                img = resize_to_multiple(img, size_divisor)
            if flipped:
                img = np.flip(img, axis=1)
            chw = np.ascontiguousarray(imnormalize_bgr(img).transpose(2, 0, 1))
            out.append((flipped, torch.from_numpy(chw).unsqueeze(0)))
    return out


def slide(model: Callable, img: torch.Tensor, crop: int, stride: int, k: int) -> torch.Tensor:
    """mmseg ``slide_inference`` logits at the input size (before the rescale)."""
    _, _, h_img, w_img = img.shape
    h_grids = max(h_img - crop + stride - 1, 0) // stride + 1
    w_grids = max(w_img - crop + stride - 1, 0) // stride + 1
    preds = img.new_zeros((1, k, h_img, w_img))
    count = img.new_zeros((1, 1, h_img, w_img))
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1, x1 = h_idx * stride, w_idx * stride
            y2, x2 = min(y1 + crop, h_img), min(x1 + crop, w_img)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            preds[:, :, y1:y2, x1:x2] += model(img[:, :, y1:y2, x1:x2])
            count[:, :, y1:y2, x1:x2] += 1
    return preds / count


@torch.no_grad()
def predict(
    model: Callable,
    bgr: np.ndarray,
    k: int,
    ratios: Sequence[float] = (1.0,),
    flip: bool = False,
    size_divisor: int | None = 32,
    img_scale: tuple[int, int] = (2048, 512),
    slide_crop_stride: tuple[int, int] | None = None,
) -> np.ndarray:
    """The original's predicted class map ``(H, W)`` for one BGR image."""
    h, w = bgr.shape[:2]
    total = None
    for flipped, x in pass_inputs(bgr, ratios, flip, size_divisor, img_scale):
        if slide_crop_stride is None:
            logits = model(x)
        else:
            logits = slide(model, x, *slide_crop_stride, k)
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        probs = F.softmax(logits, dim=1)
        if flipped:
            probs = probs.flip(dims=(3,))
        total = probs if total is None else total + probs
    return (total / (len(ratios) * (2 if flip else 1))).argmax(dim=1)[0].numpy()


def intersect_and_union(
    pred: np.ndarray, label: np.ndarray, k: int, ignore_index: int = 255
) -> tuple[np.ndarray, ...]:
    """Per-class intersection, union, prediction and label pixel counts of one image."""
    keep = label != ignore_index
    pred, label = pred[keep], label[keep]
    inter = pred[pred == label]
    area = [np.histogram(a, bins=k, range=(0, k - 1))[0] for a in (inter, pred, label)]
    return area[0], area[1] + area[2] - area[0], area[1], area[2]


def confusion(pred: np.ndarray, label: np.ndarray, k: int, ignore_index: int = 255) -> np.ndarray:
    """Rows = label, columns = prediction, over the non-ignored pixels."""
    keep = label != ignore_index
    index = label[keep].astype(np.int64) * k + pred[keep].astype(np.int64)
    return np.bincount(index, minlength=k * k).reshape(k, k)
