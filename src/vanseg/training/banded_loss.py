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

__all__ = ["banded_cross_entropy", "bilinear_taps"]

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


def _resize_width(logits: torch.Tensor, out_w: int) -> torch.Tensor:
    j0, j1, v0, v1 = bilinear_taps(logits.shape[-1], out_w, logits.device)
    return logits[..., j0] * v0 + logits[..., j1] * v1  # (B, K, h, W)


class _BandedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, mask: torch.Tensor, ignore_index: int) -> torch.Tensor:
        b, k, h, _ = logits.shape
        out_h, out_w = mask.shape[-2:]
        rows = _band_rows(b, k, out_w)
        wide = _resize_width(logits, out_w)
        i0, i1, l0, l1 = bilinear_taps(h, out_h, logits.device)
        total = logits.new_zeros(())
        for top in range(0, out_h, rows):
            band = slice(top, min(top + rows, out_h))
            z = _rows(wide, i0[band], i1[band], l0[band], l1[band])  # (B, K, r, W)
            labels = mask[:, band]
            valid = labels != ignore_index
            picked = z.gather(1, torch.where(valid, labels, 0).unsqueeze(1)).squeeze(1)
            losses = torch.logsumexp(z, dim=1) - picked
            total += torch.where(valid, losses, 0.0).sum()
        ctx.save_for_backward(logits, mask)
        ctx.ignore_index = ignore_index
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor):  # type: ignore[override]
        logits, mask = ctx.saved_tensors
        b, k, h, w = logits.shape
        out_h, out_w = mask.shape[-2:]
        rows = _band_rows(b, k, out_w)
        wide = _resize_width(logits, out_w)
        i0, i1, l0, l1 = bilinear_taps(h, out_h, logits.device)
        grad_wide = torch.zeros_like(wide)
        for top in range(0, out_h, rows):
            band = slice(top, min(top + rows, out_h))
            z = _rows(wide, i0[band], i1[band], l0[band], l1[band])
            labels = mask[:, band]
            valid = labels != ctx.ignore_index
            grad = torch.softmax(z, dim=1)
            grad.scatter_add_(
                1,
                torch.where(valid, labels, 0).unsqueeze(1),
                torch.full_like(grad[:, :1], -1.0),
            )
            grad *= (valid * grad_total).unsqueeze(1)
            grad_wide.index_add_(2, i0[band], grad * l0[band].view(-1, 1))
            grad_wide.index_add_(2, i1[band], grad * l1[band].view(-1, 1))
        j0, j1, v0, v1 = bilinear_taps(w, out_w, logits.device)
        grad_logits = torch.zeros_like(logits)
        grad_logits.index_add_(3, j0, grad_wide * v0)
        grad_logits.index_add_(3, j1, grad_wide * v1)
        return grad_logits, None, None


def _band_rows(batch: int, classes: int, width: int) -> int:
    return max(1, BAND_BYTES // (batch * classes * width * 4))


def _rows(wide, i0, i1, l0, l1) -> torch.Tensor:
    """Rows of the height resize: ``l0 * wide[.., i0, :] + l1 * wide[.., i1, :]``."""
    return wide[:, :, i0] * l0.view(-1, 1) + wide[:, :, i1] * l1.view(-1, 1)


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
