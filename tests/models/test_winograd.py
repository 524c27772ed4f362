"""WinogradConv2d: equals F.conv2d (computed in float64) at any size, layout and batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vanseg.accel.winograd import TILE_SIZES, WinogradConv2d, winograd_matrices, winograd_pays_off

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = [(1, 1), (1, 7), (5, 3), (13, 17), (32, 32)]
#: Always take the Winograd path (the default falls back to F.conv2d for small convs).
ALWAYS = {"min_gmacs": 0.0, "min_side": 1}


def _reference(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    bias = conv.bias.detach().double() if conv.bias is not None else None
    return F.conv2d(x.double(), conv.weight.detach().double(), bias, padding=1)


def _rel_diff(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.detach().double() - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("tile", TILE_SIZES)
def test_matrices_compute_a_1d_correlation(tile: int) -> None:
    """A^T [(G g) * (B^T d)] is the valid correlation of d with g (hand-checkable in 1D)."""
    bt, g, at = winograd_matrices(tile)
    d = torch.arange(1.0, tile + 3, dtype=torch.float64) ** 2
    k = torch.tensor([2.0, -1.0, 3.0], dtype=torch.float64)
    expected = torch.stack([(d[i : i + 3] * k).sum() for i in range(tile)])
    torch.testing.assert_close(at @ ((g @ k) * (bt @ d)), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("tile", TILE_SIZES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_matches_conv2d_in_float32(tile: int, bias: bool, channels_last: bool) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, padding=1, bias=bias)
    # A small workspace forces several chunks of tile rows for the larger sizes.
    wino = WinogradConv2d(conv, tile=tile, workspace_bytes=1 << 16, **ALWAYS)
    for h, w in SIZES:
        x = torch.randn(2, 6, h, w)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = wino(x)
        assert out.shape == (2, 5, h, w) and out.dtype == torch.float32
        assert out.is_contiguous()
        assert _rel_diff(out, _reference(conv, x)) < 1e-5, (h, w)


def test_many_channels_and_chunks() -> None:
    """More channels (longer sums) and one tile row per chunk stay within 1e-5."""
    torch.manual_seed(1)
    conv = nn.Conv2d(64, 32, 3, padding=1)
    wino = WinogradConv2d(conv, workspace_bytes=1, **ALWAYS)
    x = torch.randn(1, 64, 18, 21)
    assert _rel_diff(wino(x), _reference(conv, x)) < 1e-5


def test_bias_only_output_and_no_grad_parameters() -> None:
    """Zero weights give the bias everywhere (padding included); nothing is trainable."""
    conv = nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([1.0, -2.0, 0.5, 3.0]))
    wino = WinogradConv2d(conv, **ALWAYS)
    out = wino(torch.randn(1, 3, 5, 6))
    torch.testing.assert_close(out, conv.bias.detach().view(1, 4, 1, 1).expand(1, 4, 5, 6))
    assert list(wino.parameters()) == []


@pytest.mark.parametrize("autocast_tile", TILE_SIZES)
def test_autocast_bf16_returns_bf16_within_bf16_error(autocast_tile: int) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 8, 3, padding=1)
    wino = WinogradConv2d(conv, autocast_tile=autocast_tile, **ALWAYS)
    x = torch.randn(2, 16, 13, 17)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = wino(x)
        plain = F.conv2d(x, conv.weight, conv.bias, padding=1)
    assert out.dtype == plain.dtype == torch.bfloat16
    ref = _reference(conv, x)
    # F(2x2) is within a few bf16 roundings (like F.conv2d under autocast); the F(4x4) output
    # transform amplifies the bf16 rounding of the products about 10-fold.
    limit = 2e-2 if autocast_tile == 2 else 1e-1
    assert _rel_diff(out, ref) < limit
    assert _rel_diff(plain, ref) < 2e-2


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.Conv2d(4, 4, 3, padding=2, dilation=2),
        nn.Conv2d(4, 4, 3, padding=1, groups=2),
        nn.Conv2d(4, 4, 5, padding=2),
        nn.Conv2d(4, 4, 3, padding=0),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
    ],
    ids=["stride2", "dilated", "grouped", "5x5", "no-padding", "reflect"],
)
def test_rejects_other_convs_naming_them(conv: nn.Conv2d) -> None:
    with pytest.raises(ValueError, match=r"decode_head\.fpn_bottleneck.*need"):
        WinogradConv2d(conv, name="decode_head.fpn_bottleneck")


def test_rejects_bad_tile_and_input() -> None:
    conv = nn.Conv2d(4, 4, 3, padding=1)
    with pytest.raises(ValueError, match="tile must be one of"):
        WinogradConv2d(conv, tile=6)
    with pytest.raises(ValueError, match=r"expects \(N, 4, H, W\)"):
        WinogradConv2d(conv)(torch.randn(1, 3, 8, 8))


def test_pays_off_rule() -> None:
    assert winograd_pays_off(512, 512, 32, 32)  # fpn_convs.2 at 512x512: 2.4 GMAC
    assert winograd_pays_off(2560, 512, 16, 16)  # bottleneck: 3.0 GMAC
    assert not winograd_pays_off(512, 512, 8, 8)  # 0.15 GMAC
    assert not winograd_pays_off(64, 64, 128, 128)  # 0.6 GMAC
    assert not winograd_pays_off(4096, 4096, 8, 64)  # plenty of MACs, too few tile rows


def test_small_calls_fall_back_to_conv2d() -> None:
    """Below the rule the result is F.conv2d's own, bit for bit, in NCHW."""
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1)
    x = torch.randn(2, 8, 20, 20).contiguous(memory_format=torch.channels_last)
    out = WinogradConv2d(conv)(x)
    assert out.is_contiguous()
    assert torch.equal(out, F.conv2d(x, conv.weight, conv.bias, padding=1).contiguous())
    forced = WinogradConv2d(conv, **ALWAYS)(x)
    assert not torch.equal(forced, out)  # the Winograd path rounds differently


def test_parts_along_the_channels_are_the_conv_of_their_concatenation() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(10, 4, 3, padding=1)
    wino = WinogradConv2d(conv, tile=4, workspace_bytes=1 << 16, **ALWAYS)
    parts = [torch.randn(2, c, 9, 13) for c in (3, 5, 2)]
    expected = _reference(conv, torch.cat(parts, dim=1))
    assert _rel_diff(wino(parts), expected) < 1e-5
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 parts, as in the bf16 fast path
        out = WinogradConv2d(conv, tile=2, **ALWAYS)([p.bfloat16() for p in parts])
    assert out.dtype == torch.bfloat16 and _rel_diff(out, expected) < 3e-2
    with pytest.raises(ValueError, match="parts"):
        wino(parts[:2])
