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

Memory: the probabilities of a pass are ``K x H x W`` float32 at the output size (150 classes on
a 12 MP photo: 7 GB, and the sum over passes as much again). :func:`predict_mask` needs only their
argmax: when the whole map is over :data:`MASK_BAND_BYTES` it keeps every pass's logits at the
network input size and computes the output in bands of rows (:func:`resize_rows`), so its memory
no longer grows with ``K x H x W``. Only :func:`predict_probs` holds the full probabilities.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import chain

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vanseg.inference.preprocess import as_uint8_rgb, pass_inputs
from vanseg.inference.protocol import InferenceProtocol
from vanseg.models.layers.matrix_decomposition import NMF2D

#: Largest ``K x H x W`` float32 probability map (in bytes) that :func:`predict_mask` computes
#: whole, exactly as :func:`predict_probs` does; a larger one is computed in bands of output rows
#: of at most this size each (a few such bands are alive at once). Tests lower it to force bands.
MASK_BAND_BYTES = 512 * 2**20

__all__ = [
    "MASK_BAND_BYTES",
    "mask_of_passes",
    "pass_logits",
    "predict_mask",
    "predict_probs",
    "probs_of_passes",
    "predict_probs_tensor",
    "resize_rows",
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


def _resized_probs(logits: torch.Tensor, flipped: bool, out_size: tuple[int, int]) -> torch.Tensor:
    """Probabilities at ``out_size`` of one pass's logits, un-flipped."""
    logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
    probs = logits.float().softmax(dim=1)
    return probs.flip(-1) if flipped else probs


def _probs(
    model: nn.Module,
    inputs: torch.Tensor,
    flipped: bool,
    out_size: tuple[int, int],
    protocol: InferenceProtocol,
) -> torch.Tensor:
    """Probabilities at ``out_size`` of prepared (possibly flipped) inputs, un-flipped."""
    return _resized_probs(_logits(model, inputs, protocol), flipped, out_size)


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


def _out_size(rgb: np.ndarray, out_size: Sequence[int] | None) -> tuple[int, int]:
    size = tuple(out_size) if out_size is not None else rgb.shape[:2]
    return int(size[0]), int(size[1])


def _pass_logits(
    model: nn.Module, rgb: np.ndarray, protocol: InferenceProtocol
) -> Iterator[tuple[bool, torch.Tensor]]:
    """``(flipped, logits at the network input size)`` of every pass, in the protocol's order."""
    device = _device(model)
    for flip, inputs in pass_inputs(rgb, protocol):
        yield flip, pass_logits(model, inputs.to(device), protocol)


def pass_logits(
    model: nn.Module, inputs: torch.Tensor, protocol: InferenceProtocol
) -> torch.Tensor:
    """Logits ``(B, K, h, w)`` of prepared network inputs: one forward, or slide windows."""
    return _logits(model, inputs, protocol)


def _average(
    passes: Iterable[tuple[bool, torch.Tensor]],
    protocol: InferenceProtocol,
    out_size: tuple[int, int],
    rows: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Probabilities at ``out_size`` averaged over the passes: all rows, or ``rows = (start,
    stop)`` only (:func:`resize_rows`)."""
    total: torch.Tensor | None = None
    for flip, logits in passes:
        if rows is None:
            probs = _resized_probs(logits, flip, out_size)
        else:
            probs = resize_rows(logits, out_size, *rows).float().softmax(dim=1)
            probs = probs.flip(-1) if flip else probs
        if total is None:
            total = probs
        else:
            total += probs  # in place: one map less alive, the same sums
        del probs  # not alive during the next pass
    assert total is not None
    return total.div_(protocol.passes)


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    protocol: InferenceProtocol,
    out_size: Sequence[int] | None = None,
) -> torch.Tensor:
    """Class probabilities ``(1, K, H, W)`` for one original RGB uint8 image ``(H, W, 3)``.

    Every pass resizes the original image itself, so multi-scale matches the original exactly.
    This holds ``K x H x W`` float32 values (and the sum over passes); for the mask alone use
    :func:`predict_mask`, which needs far less memory on big images.

    Args:
        model: ``(B, 3, h, w) -> logits (B, K, h, w)``, in eval mode.
        image: RGB uint8, numpy or tensor, at its original resolution.
        protocol: Resizing, mode and TTA.
        out_size: ``(H, W)`` of the output; defaults to the image's own size (the label size).
    """
    rgb = as_uint8_rgb(image)
    size = _out_size(rgb, out_size)
    return _average(_pass_logits(model, rgb, protocol), protocol, size)


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


def _axis_weights(
    n_in: int, n_out: int, start: int, stop: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear (``align_corners=False``) sources of output positions ``start..stop - 1``.

    PyTorch's formula, in float32 as its kernels compute it: ``scale = float32(n_in) / n_out``,
    ``src = scale * (d + 0.5) - 0.5`` rounded once (the kernels' fused multiply-add), negatives
    clamped to 0; ``i0 = floor(src)`` (at most ``n_in - 1``), ``i1 = min(i0 + 1, n_in - 1)``,
    ``l1 = src - i0``, ``l0 = 1 - l1``. Same sizes: ``src = d``.

    Returns:
        ``(i0, i1, l0, l1)``: int64 indices and float32 weights, one per output position.
    """
    dst = np.arange(start, stop, dtype=np.float64)
    if n_in == n_out:
        src = dst.astype(np.float32)
    else:
        scale = np.float32(n_in) / np.float32(n_out)
        # Exact in float64 (24-bit scale times a half-integer), so one rounding to float32.
        src = np.maximum((np.float64(scale) * (dst + 0.5) - 0.5).astype(np.float32), 0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    l1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    l0 = np.float32(1) - l1

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(device)

    return tensor(i0), tensor(i1), tensor(l0), tensor(l1)


def resize_rows(
    logits: torch.Tensor, out_size: Sequence[int], start: int, stop: int
) -> torch.Tensor:
    """Rows ``start..stop - 1`` of the bilinear resize of ``logits`` (B, K, h, w) to ``out_size``.

    ``F.interpolate(logits, out_size, mode="bilinear", align_corners=False)[:, :, start:stop]``
    computed from the ``logits`` rows those output rows need, with the same source rows and
    weights (:func:`_axis_weights`), then resized along the width by ``F.interpolate``:
    ``(B, K, stop - start, W)`` in ``logits``' dtype.
    The values agree with the full resize up to float rounding (a few ulp): PyTorch's own kernels
    round differently with the shape of their output, so no slice of another shape reproduces
    the full resize bit for bit.
    """
    i0, i1, l0, l1 = _axis_weights(logits.shape[2], int(out_size[0]), start, stop, logits.device)
    rows = logits.index_select(2, i0) * l0.view(-1, 1) + logits.index_select(2, i1) * l1.view(-1, 1)
    # Along the width, PyTorch's kernel itself (same sizes as the full resize; rows kept as is).
    size = (stop - start, int(out_size[1]))
    return F.interpolate(rows, size=size, mode="bilinear", align_corners=False).to(logits.dtype)


@torch.no_grad()
def predict_mask(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    protocol: InferenceProtocol,
    out_size: Sequence[int] | None = None,
) -> torch.Tensor:
    """Predicted class indices ``(H, W)`` (int64) for one original RGB uint8 image.

    The argmax of :func:`predict_probs`. When its ``K x H x W`` float32 map fits in
    :data:`MASK_BAND_BYTES`, that very computation; else every pass's logits are kept at the
    network input size and the output is computed in bands of rows of at most that size
    (:func:`resize_rows`), so memory does not grow with ``K x H x W``. Banded, a pixel can differ
    from the full computation only where two classes' averaged probabilities tie within float
    rounding (about 1e-6).
    """
    rgb = as_uint8_rgb(image)
    return mask_of_passes(_pass_logits(model, rgb, protocol), protocol, _out_size(rgb, out_size))


def probs_of_passes(
    passes: Iterable[tuple[bool, torch.Tensor]],
    protocol: InferenceProtocol,
    size: tuple[int, int],
) -> torch.Tensor:
    """Probabilities ``(1, K, H, W)`` of the passes' ``(flipped, logits)``, as
    :func:`predict_probs` averages them."""
    return _average(passes, protocol, size)


def mask_of_passes(
    passes: Iterable[tuple[bool, torch.Tensor]],
    protocol: InferenceProtocol,
    size: tuple[int, int],
) -> torch.Tensor:
    """The mask ``(H, W)`` of the passes' ``(flipped, logits)``: the tail of :func:`predict_mask`.

    For passes that were run elsewhere (`vanseg.inference.batched`); whole or in bands of rows
    exactly as :func:`predict_mask` decides.
    """
    passes = iter(passes)
    first = next(passes)
    row_bytes = first[1].shape[1] * size[1] * 4  # K float32 values per output pixel
    rows = max(1, MASK_BAND_BYTES // row_bytes)
    if rows >= size[0]:
        return _average(chain([first], passes), protocol, size)[0].argmax(dim=0)
    stored = [first, *passes]
    mask = torch.empty(size, dtype=torch.int64, device=first[1].device)
    for start in range(0, size[0], rows):
        stop = min(start + rows, size[0])
        mask[start:stop] = _average(stored, protocol, size, (start, stop))[0].argmax(dim=0)
    return mask
