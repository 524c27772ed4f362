"""Cross-entropy of bilinearly upsampled logits, computed in bands of output rows.

The training loss resizes the (B, K, h, w) head logits to the label size (B, K, H, W) and takes
the per-pixel cross-entropy (docs/reference.md §3.9). Materialised, the resized logits and
their gradient are 2 x 150 x 512 x 512 floats (315 MB each) for a batch of two; writing and
reading them is about a quarter of a CPU training step. :func:`banded_cross_entropy` computes
the same sum a few output rows at a time, so no full-size tensor is ever allocated, and
recomputes each band in the backward pass.

The resize follows PyTorch's CPU bilinear kernel (``align_corners=False``): source index
``max((dst + 0.5) * in / out - 0.5, 0)``, weights in float32, the width interpolated first.
The losses equal ``F.cross_entropy(F.interpolate(...))`` up to float rounding (tested).
"""

from __future__ import annotations

import torch

__all__ = ["banded_cross_entropy", "bilinear_matrix", "bilinear_taps"]

#: Bytes of one band of resized logits (B x K x rows x W floats): small enough for the cache.
BAND_BYTES = 4 * 2**20


def bilinear_taps(
    in_size: int, out_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(i0, i1, l0, l1)``: output ``o`` of a 1-D resize is ``l0[o] x[i0[o]] + l1[o] x[i1[o]]``."""
    scale = torch.tensor(in_size / out_size, dtype=torch.float32)
    dst = torch.arange(out_size, dtype=torch.float32)
    src = ((dst + 0.5) * scale - 0.5).clamp_min(0.0)
    i0 = src.long().clamp_max(in_size - 1)
    i1 = torch.where(i0 < in_size - 1, i0 + 1, i0)
    l1 = (src - i0.float()).clamp(0.0, 1.0)
    l0 = 1.0 - l1
    return i0.to(device), i1.to(device), l0.to(device), l1.to(device)


def bilinear_matrix(in_size: int, out_size: int, device: torch.device) -> torch.Tensor:
    """(out, in) matrix of the 1-D resize: two non-zeros per row, ``l0`` and ``l1``."""
    i0, i1, l0, l1 = bilinear_taps(in_size, out_size, torch.device("cpu"))
    matrix = torch.zeros(out_size, in_size)
    rows = torch.arange(out_size)
    matrix.index_put_((rows, i0), l0, accumulate=True)
    matrix.index_put_((rows, i1), l1, accumulate=True)
    return matrix.to(device)


def _bands(in_h: int, out_h: int, rows: int) -> list[tuple[int, int, int, int]]:
    """``(top, bottom, first, last + 1)``: output rows of a band and the input rows they read."""
    i0, i1, _, _ = bilinear_taps(in_h, out_h, torch.device("cpu"))
    first, last = i0.tolist(), i1.tolist()
    return [
        (top, min(top + rows, out_h), first[top], last[min(top + rows, out_h) - 1] + 1)
        for top in range(0, out_h, rows)
    ]


def _band_rows(batch: int, classes: int, width: int) -> int:
    return max(1, BAND_BYTES // (batch * classes * width * 4))


class _BandedCrossEntropy(torch.autograd.Function):
    """Sum of per-pixel cross-entropies; resized rows computed as small matrix products.

    Layout (B, rows, W, K): the classes are contiguous for the softmax. The width resize is
    one product with the (W, w) matrix; each band of output rows is the product of its
    (rows, n) slice of the (H, h) matrix with the n input rows it reads.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, mask: torch.Tensor, ignore_index: int) -> torch.Tensor:
        b, k, h, w = logits.shape
        out_h, out_w = mask.shape[-2:]
        resize_h = bilinear_matrix(h, out_h, logits.device)
        resize_w = bilinear_matrix(w, out_w, logits.device)
        wide = torch.matmul(resize_w, logits.permute(0, 2, 3, 1))  # (B, h, W, K)
        total = logits.new_zeros(())
        for top, bottom, first, stop in _bands(h, out_h, _band_rows(b, k, out_w)):
            z = torch.matmul(resize_h[top:bottom, first:stop], wide[:, first:stop].flatten(2))
            z = z.view(b, bottom - top, out_w, k)
            labels = mask[:, top:bottom]
            valid = labels != ignore_index
            picked = z.gather(-1, torch.where(valid, labels, 0).unsqueeze(-1)).squeeze(-1)
            losses = torch.logsumexp(z, dim=-1).sub_(picked)
            total += torch.where(valid, losses, 0.0).sum()
        ctx.save_for_backward(logits, mask, resize_h, resize_w)
        ctx.ignore_index = ignore_index
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor):  # type: ignore[override]
        logits, mask, resize_h, resize_w = ctx.saved_tensors
        b, k, h, w = logits.shape
        out_h, out_w = mask.shape[-2:]
        wide = torch.matmul(resize_w, logits.permute(0, 2, 3, 1))
        grad_wide = torch.zeros_like(wide)
        for top, bottom, first, stop in _bands(h, out_h, _band_rows(b, k, out_w)):
            part = resize_h[top:bottom, first:stop]
            z = torch.matmul(part, wide[:, first:stop].flatten(2)).view(b, -1, out_w, k)
            labels = mask[:, top:bottom]
            valid = labels != ctx.ignore_index
            grad = torch.softmax(z, dim=-1)
            grad.scatter_add_(
                -1,
                torch.where(valid, labels, 0).unsqueeze(-1),
                torch.full_like(grad[..., :1], -1.0),
            )
            grad.mul_((valid * grad_total).unsqueeze(-1))
            grad_wide[:, first:stop] += torch.matmul(part.t(), grad.flatten(2)).view(
                b, -1, out_w, k
            )
        grad_x = torch.matmul(resize_w.t(), grad_wide)  # (B, h, w, K)
        return grad_x.permute(0, 3, 1, 2), None, None


def banded_cross_entropy(
    logits: torch.Tensor, mask: torch.Tensor, ignore_index: int
) -> torch.Tensor:
    """Sum over labelled pixels of the cross-entropy of ``logits`` resized to ``mask``'s size.

    Args:
        logits: (B, K, h, w) float32 logits (any memory layout).
        mask: (B, H, W) integer labels; ``ignore_index`` pixels contribute nothing.
        ignore_index: The label of ignored pixels.

    Returns:
        The scalar sum (divide by the pixel count for the mean). Differentiable in ``logits``.
    """
    return _BandedCrossEntropy.apply(logits.contiguous().float(), mask, ignore_index)
