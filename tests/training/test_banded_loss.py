"""The banded cross-entropy equals the loss of the materialised resized logits, and its gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vanseg.accel import banded_loss
from vanseg.training.module import segmentation_loss


def _materialised(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    up = F.interpolate(logits, size=mask.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(up, mask, ignore_index=255, reduction="sum")


@pytest.mark.parametrize(
    "low, high", [((8, 8), (64, 64)), ((7, 5), (50, 37)), ((3, 4), (3, 4)), ((16, 16), (17, 19))]
)
@pytest.mark.parametrize("band_rows", [1, 3, 1000])
def test_sum_and_gradient_equal_the_materialised_loss(
    low: tuple[int, int], high: tuple[int, int], band_rows: int, monkeypatch
) -> None:
    monkeypatch.setattr(banded_loss, "BAND_BYTES", 2 * 5 * high[1] * 4 * band_rows)
    torch.manual_seed(0)
    logits = torch.randn(2, 5, *low, requires_grad=True)
    mask = torch.randint(0, 5, (2, *high))
    mask[0, : high[0] // 3] = 255
    expected = _materialised(logits, mask)
    (grad_expected,) = torch.autograd.grad(expected, logits)
    total = banded_loss.banded_cross_entropy(logits, mask, 255)
    (grad,) = torch.autograd.grad(total, logits)
    torch.testing.assert_close(total, expected, rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(grad, grad_expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("average", ["all_pixels", "valid_pixels"])
def test_segmentation_loss_banded_matches_the_plain_loss(average: str) -> None:
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 6, 7).contiguous(memory_format=torch.channels_last)
    mask = torch.randint(0, 4, (2, 24, 28))
    mask[1, :, :5] = 255
    plain = segmentation_loss(logits, mask, average=average)
    banded = segmentation_loss(logits, mask, average=average, banded=True)
    torch.testing.assert_close(banded, plain, rtol=1e-6, atol=1e-6)


def test_taps_are_those_of_the_bilinear_resize() -> None:
    """A 1-D resize by the taps equals F.interpolate on a (1, 1, 1, n) row."""
    x = torch.randn(11)
    for out in (1, 4, 11, 23, 64):
        i0, i1, l0, l1 = banded_loss.bilinear_taps(11, out, x.device)
        expected = F.interpolate(x.view(1, 1, 1, -1), size=(1, out), mode="bilinear")
        torch.testing.assert_close(x[i0] * l0 + x[i1] * l1, expected.view(-1))
