"""VAN backbone: sizes against docs/reference.md, shapes, strides, timm features."""

from __future__ import annotations

import math

import pytest
import timm
import torch

import vanseg.models as m
from vanseg.errors import CheckpointError
from vanseg.models.backbones.van import checkpoint_filter_fn

# docs/reference.md §1 (backbone params) and §2 (state-dict entry counts).
SIZES = {
    "van_tiny": (3_848_800, 400, (32, 64, 160, 256)),
    "van_small": (13_348_800, 316, (64, 128, 320, 512)),
    "van_base": (26_065_472, 624, (64, 128, 320, 512)),
    "van_large": (44_252_608, 1100, (64, 128, 320, 512)),
}


@pytest.mark.parametrize("name", SIZES)
def test_sizes_match_reference(name: str) -> None:
    params, entries, dims = SIZES[name]
    with torch.device("meta"):
        model = getattr(m, name)()
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(model.state_dict()) == entries
    assert model.out_channels == dims
    assert model.strides == (4, 8, 16, 32)


@pytest.mark.parametrize("hw", [(64, 64), (65, 47)])
@pytest.mark.parametrize("strides", [(4, 2, 2, 2), (4, 2, 1, 1)])
def test_output_shapes(hw: tuple[int, int], strides: tuple[int, ...]) -> None:
    model = m.van_test(strides=strides).eval()
    feats = model(torch.randn(2, 3, *hw))
    assert len(feats) == 4
    expected_strides = (4, 8, 16, 32) if strides == (4, 2, 2, 2) else (4, 8, 8, 8)
    assert model.strides == expected_strides
    for f, c, s in zip(feats, model.out_channels, expected_strides, strict=True):
        assert f.shape == (2, c, math.ceil(hw[0] / s), math.ceil(hw[1] / s))


def test_stage_outputs_are_layer_normalised() -> None:
    model = m.van_test().eval()
    for f in model(torch.randn(1, 3, 64, 64)):
        per_pixel = f.permute(0, 2, 3, 1)
        torch.testing.assert_close(
            per_pixel.mean(-1), torch.zeros_like(per_pixel[..., 0]), atol=1e-4, rtol=0
        )
        torch.testing.assert_close(
            per_pixel.var(-1, unbiased=False), torch.ones_like(per_pixel[..., 0]), atol=1e-2, rtol=0
        )


def test_backward_reaches_every_parameter() -> None:
    model = m.van_test(drop_path_rate=0.1).train()
    sum(f.mean() for f in model(torch.randn(2, 3, 64, 64))).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_layers_as_in_reference() -> None:
    block = m.van_tiny().stages[0].blocks[0]
    lka = block.attn.spatial_gating_unit
    assert (lka.conv0.kernel_size, lka.conv0.groups) == ((5, 5), 32)
    assert (lka.conv_spatial.kernel_size, lka.conv_spatial.dilation) == ((7, 7), (3, 3))
    assert lka.conv_spatial.padding == (9, 9)
    assert block.mlp.dwconv.dwconv.groups == 32 * 8
    assert torch.equal(block.layer_scale_1, torch.full((32,), 1e-2))
    assert isinstance(block.norm1, torch.nn.BatchNorm2d)
    assert m.van_tiny().stages[0].norm.eps == 1e-6


def test_drop_path_schedule() -> None:
    model = m.van_large(drop_path_rate=0.25)
    blocks = [b for s in model.stages for b in s.blocks]
    assert len(blocks) == 38
    assert isinstance(blocks[0].drop_path, torch.nn.Identity)  # rate 0
    assert blocks[-1].drop_path.drop_prob == pytest.approx(0.25)
    assert blocks[19].drop_path.drop_prob == pytest.approx(0.25 * 19 / 37)


def test_checkpoint_filter_fn_renames_original_keys() -> None:
    x = torch.zeros(1)
    original = {
        "module.patch_embed1.proj.weight": x,
        "block3.4.attn.spatial_gating_unit.conv1.bias": x,
        "norm4.weight": x,
        "head.weight": x,  # the ImageNet classifier
        "pos_embed": x,  # not a VAN key: passed on for the strict load to report
    }
    out = checkpoint_filter_fn(original, m.van_test())
    assert set(out) == {
        "stages.0.patch_embed.proj.weight",
        "stages.2.blocks.4.attn.spatial_gating_unit.conv1.bias",
        "stages.3.norm.weight",
        "pos_embed",
    }


def test_forward_intermediates_norm_selects_before_or_after_the_stage_layernorm() -> None:
    model = m.van_test().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        after = model.forward_intermediates(x, intermediates_only=True)
        before = model.forward_intermediates(x, norm=False, intermediates_only=True)
        expected = model(x)
    for got, want in zip(after, expected, strict=True):
        torch.testing.assert_close(got, want)
    for i, (raw, normed) in enumerate(zip(before, after, strict=True)):
        # LayerNorm over channels: per pixel mean 0 and variance 1 before the affine part
        # (weight 1, bias 0 at init) holds for the normalised maps only.
        assert normed.mean(dim=1).abs().max() < 1e-4
        assert raw.mean(dim=1).abs().max() > 1e-3, f"stage {i} looks normalised already"
        torch.testing.assert_close(model.stages[i].normalize(raw), normed)


@pytest.mark.parametrize("name", ["van_tiny", "van_b0"])
def test_timm_features_only(name: str) -> None:
    model = timm.create_model(name, features_only=True, out_indices=(1, 2, 3)).eval()
    assert model.feature_info.channels() == [64, 160, 256]
    assert model.feature_info.reduction() == [8, 16, 32]
    feats = model(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 8, 8), (160, 4, 4), (256, 2, 2)]


def test_timm_pretrained_true_names_the_published_weights() -> None:
    # pretrained=True (timm's flag) fetches van_tiny_754 through vanseg's cache; the suite runs
    # offline with an empty cache (tests/conftest.py), so the one-line offline error comes back.
    with pytest.raises(CheckpointError, match=r"van_tiny_754: .*tools\.weights get van_tiny_754"):
        timm.create_model("van_b0", pretrained=True)
    with pytest.raises(ValueError, match="no published ImageNet weights"):
        timm.create_model("van_test", pretrained=True)
    assert {"van_tiny", "van_b3", "van_test"} <= set(timm.list_models("van_*"))
