"""Inference layers of the fast path: each equals the plain computation it replaces."""

from __future__ import annotations

import gc

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vanseg.accel import kernels
from vanseg.accel.fast_layers import (
    PhaseDilatedConv,
    PointwiseConv,
    RecycledResize,
    depthwise_gelu,
    linear_nhwc,
)
from vanseg.accel.optimize import max_relative_difference
from vanseg.models import LightHamHead
from vanseg.models.backbones import van_fused
from vanseg.models.backbones.van import Block
from vanseg.models.heads.fused import FastLightHamHead


def _bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def test_recycled_resize_never_overwrites_a_result_in_use() -> None:
    resize = RecycledResize()
    a, b = torch.randn(1, 3, 4, 5), torch.randn(1, 3, 4, 5)
    first = resize(a, (9, 11))
    kept = first.clone()
    second = resize(b, (9, 11))  # `first` is still held: a new buffer
    assert torch.equal(first, kept)
    assert first.data_ptr() != second.data_ptr()
    torch.testing.assert_close(second, _bilinear(b, (9, 11)), rtol=0, atol=0)

    view = second[0, 1]  # a view keeps the storage in use
    del second
    third = resize(a, (9, 11))
    assert third.data_ptr() != view.data_ptr()
    torch.testing.assert_close(third, _bilinear(a, (9, 11)), rtol=0, atol=0)

    address = third.data_ptr()
    del third, view, first
    gc.collect()
    fourth = resize(b, (9, 11))  # nothing refers to the last buffer: it is reused
    assert fourth.data_ptr() == address
    torch.testing.assert_close(fourth, _bilinear(b, (9, 11)), rtol=0, atol=0)


def test_recycled_resize_keeps_autograd_working() -> None:
    x = torch.randn(1, 2, 3, 3, requires_grad=True)
    RecycledResize()(x, (6, 6)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("channels_last", [False, True])
def test_pointwise_conv_is_the_1x1_conv(channels_last: bool) -> None:
    conv = nn.Conv2d(8, 5, 1)
    x = torch.randn(2, 8, 6, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(PointwiseConv(conv)(x), conv(x), rtol=1e-5, atol=1e-6)


def test_light_ham_squeeze_before_resize_is_the_same_map() -> None:
    torch.manual_seed(0)
    head = LightHamHead([8, 16, 32, 64], num_classes=5, ham_channels=32, channels=32, rank=4)
    head.hamburger.ham.eval_seed = 0
    head.eval()
    # stage sizes of a 1/8, 1/16, 1/32 pyramid of an odd-sized image
    feats = [
        torch.randn(1, c, s, t)
        for c, (s, t) in zip([8, 16, 32, 64], [(26, 19), (13, 10), (7, 5), (4, 3)], strict=True)
    ]
    with torch.inference_mode():
        plain = head(feats)
        fast = FastLightHamHead(head)(feats)
    assert fast.shape == plain.shape == (1, 5, 13, 10)
    assert max_relative_difference(plain, fast) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("band_bytes", [2**30, 1])  # whole map; one row per band
def test_fused_block_equals_the_block(
    dtype: torch.dtype, band_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(van_fused, "MLP_BAND_BYTES", band_bytes)
    torch.manual_seed(0)
    block = Block(16, mlp_ratio=4)
    with torch.no_grad():
        for bn in (block.norm1, block.norm2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 1.5)
        block.layer_scale_1.uniform_(0.1, 0.5)
        block.layer_scale_2.uniform_(0.1, 0.5)
    block.eval()
    folded = nn.Sequential(block.fuse()).to(memory_format=torch.channels_last)
    x = torch.randn(2, 16, 11, 9).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = block(x)
        x = x.to(dtype)  # under autocast a block's input comes from a bf16 conv
        folded[0].fused = False
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            unfused = folded(x)
            folded[0].fused = True
            fused = folded(x)
    # (the fused bf16 path keeps the residual stream in bf16; the unfused one promotes it)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    assert max_relative_difference(expected, fused) <= tolerance
    assert max_relative_difference(unfused, fused) <= tolerance


#: Largest difference between a fused kernel and the plain ops, relative to the largest output:
#: a few roundings of the dtype (bf16 keeps 8 significant bits, fp16 11).
FUSED_TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 3e-3}


def _fused_and_plain(op: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The fast path's call of ``op`` on VAN-sized operands, and the plain ops it stands for."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 13, 11, 64, generator=gen).to(dtype)  # (B, H, W, C)
    w, b = torch.randn(96, 64, generator=gen).to(dtype) / 8, torch.randn(96).to(dtype)
    other = torch.randn(2, 13, 11, 96, generator=gen).to(dtype)
    with torch.inference_mode():
        if op == "depthwise+gelu":
            conv = nn.Conv2d(64, 64, 3, padding=1, groups=64)
            img = x.permute(0, 3, 1, 2)  # channels_last memory
            weight, bias = conv.weight.detach().to(dtype), conv.bias.detach().to(dtype)
            plain = F.gelu(F.conv2d(img, weight, bias, padding=1, groups=64))
            return depthwise_gelu(img, conv, weight, bias), plain
        plain = F.linear(x, w, b)
        if op == "linear":
            return linear_nhwc(x, w, b), plain
        if op == "linear+gelu":
            return linear_nhwc(x, w, b, "gelu"), F.gelu(plain)
        binary = "add" if op == "linear+add" else "mul"
        expected = plain + other if binary == "add" else plain * other
        return linear_nhwc(x, w, b, binary=binary, other=other), expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("op", kernels.FUSED_OPS)
def test_fused_kernel_equals_the_plain_ops(op: str, dtype: torch.dtype) -> None:
    """On every CPU: a fused kernel that this CPU has must equal the plain ops; one it lacks
    is skipped with the reason (the fast path then runs the plain ops, tested below)."""
    if not kernels.has_fused(op, dtype):
        pytest.skip(f"no fused {op} in {dtype} here: {kernels.unavailable_reason(op, dtype)}")
    with kernels.recording() as ran:
        fused, plain = _fused_and_plain(op, dtype)
    assert list(ran) == [f"oneDNN {op} ({dtype})"]
    assert fused.dtype == plain.dtype == dtype and fused.shape == plain.shape
    assert max_relative_difference(plain.float(), fused.float()) <= FUSED_TOLERANCE[dtype]


@pytest.fixture
def no_fused_kernels(monkeypatch: pytest.MonkeyPatch):
    """Every fused kernel fails its probe, as bf16 ones do on an AVX2 CPU."""

    def failing(fused, plain, dtype):
        return "could not create a primitive descriptor (simulated)"

    kernels._probe_all.cache_clear()
    monkeypatch.setattr(kernels, "_probe", failing)
    yield
    kernels._probe_all.cache_clear()  # the next caller probes the real kernels again


@pytest.mark.parametrize("op", kernels.FUSED_OPS)
def test_missing_fused_kernels_fall_back_to_the_plain_ops(
    op: str, no_fused_kernels, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="vanseg"), kernels.recording() as ran:
        fallback, plain = _fused_and_plain(op, torch.float32)
        _fused_and_plain(op, torch.float32)
    assert dict(ran) == {f"plain {op} (torch.float32)": 2}
    torch.testing.assert_close(fallback, plain, rtol=1e-6, atol=1e-6)
    (record,) = caplog.records  # probed once: one line, naming every missing op
    assert "unavailable in float32" in record.getMessage()
    assert all(name in record.getMessage() for name in kernels.FUSED_OPS)


def test_fused_block_without_fused_kernels_equals_the_block(no_fused_kernels) -> None:
    torch.manual_seed(0)
    block = Block(16, mlp_ratio=4).eval()
    folded = block.fuse().to(memory_format=torch.channels_last)
    folded.fused = True
    x = torch.randn(2, 16, 11, 9).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), kernels.recording() as ran:
        fast = folded(x)
        expected = block(x)
    assert all(name.startswith("plain ") for name in ran) and ran
    assert max_relative_difference(expected, fast) <= 1e-5


@pytest.mark.parametrize("size", [(1, 1), (2, 5), (9, 9), (13, 17), (30, 31)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_phase_dilated_conv_is_the_dilated_conv(size: tuple[int, int], channels_last: bool) -> None:
    conv = nn.Conv2d(6, 6, 7, padding=9, dilation=3, groups=6).double()
    x = torch.randn(2, 6, *size, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(PhaseDilatedConv(conv)(x), conv(x), rtol=1e-12, atol=1e-12)


def test_phase_dilated_conv_refuses_other_convs() -> None:
    with pytest.raises(ValueError, match="dilated depthwise"):
        PhaseDilatedConv(nn.Conv2d(6, 6, 7, padding=3, dilation=3, groups=6))
