"""Every backbone x head: shapes, backward, and exact parameter counts (docs/reference.md §1)."""

from __future__ import annotations

import pytest
import torch

import vanseg
from tests.conftest import config_options
from vanseg.models.heads.base import DecodeHead

HEADS = config_options("head")
VAN_BACKBONES = [b for b in config_options("backbone") if b.startswith("van_")]
HAS_AUX = {"hamnet", "upernet"}
# Narrow heads keep the shape tests fast; widths are checked by the parameter counts above.
NARROW = {
    "light_ham": ["head.channels=32"],
    "light_ham_d256": ["head.ham_channels=32", "head.channels=32"],
    "hamnet": ["head.channels=32", "aux_head.channels=32"],
    "upernet": ["head.channels=32", "aux_head.channels=32"],
    "fpn": ["neck.out_channels=32", "head.channels=32"],
}
HEAD_STRIDE = {"light_ham": 8, "light_ham_d256": 8, "hamnet": 8, "upernet": 4, "fpn": 4}

# docs/reference.md §1: (params_all, params_no_aux) of the 17 published configurations.
PUBLISHED_PARAMS = {
    ("van_tiny", "light_ham_d256"): (4_208_630, 4_208_630),
    ("van_tiny", "light_ham"): (4_866_134, 4_866_134),
    ("van_small", "light_ham"): (14_707_286, 14_707_286),
    ("van_base", "light_ham"): (27_423_958, 27_423_958),
    ("van_large", "light_ham"): (45_611_094, 45_611_094),
    ("van_tiny", "hamnet"): (11_940_236, 11_532_534),
    ("van_small", "hamnet"): (24_168_172, 23_391_830),
    ("van_base", "hamnet"): (36_884_844, 36_108_502),
    ("van_large", "hamnet"): (55_071_980, 54_295_638),
    ("van_tiny", "upernet"): (32_133_004, 31_725_302),
    ("van_small", "upernet"): (43_836_652, 43_060_310),
    ("van_base", "upernet"): (56_553_324, 55_776_982),
    ("van_large", "upernet"): (74_740_460, 73_964_118),
    ("van_tiny", "fpn"): (7_984_374, 7_984_374),
    ("van_small", "fpn"): (17_615_446, 17_615_446),
    ("van_base", "fpn"): (30_332_118, 30_332_118),
    ("van_large", "fpn"): (48_519_254, 48_519_254),
}


@pytest.mark.parametrize(("backbone", "head"), list(PUBLISHED_PARAMS))
def test_published_parameter_counts(backbone: str, head: str) -> None:
    with torch.device("meta"):
        model = vanseg.build_model(backbone, head)
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    aux = sum(p.numel() for p in model.auxiliary_head.parameters()) if head in HAS_AUX else 0
    assert (total, total - aux) == PUBLISHED_PARAMS[(backbone, head)]


@pytest.mark.parametrize("backbone", VAN_BACKBONES)
@pytest.mark.parametrize("head", HEADS)
def test_every_backbone_composes_with_every_head(backbone: str, head: str) -> None:
    with torch.device("meta"):
        model = vanseg.build_model(backbone, head, num_classes=7)
    assert model.num_classes == 7
    assert (model.auxiliary_head is not None) == (head in HAS_AUX)
    expected = (4, 2, 1, 1) if head == "hamnet" else (4, 2, 2, 2)
    stage_strides = [s.patch_embed.proj.stride[0] for s in model.backbone.stages]
    assert tuple(stage_strides) == expected


def test_large_drop_path_follows_the_head_recipe() -> None:
    # docs/reference.md §3.6: 0.25 for Light-Ham and HamNet, 0.1 for UperNet and FPN.
    for head, rate in [("light_ham", 0.25), ("hamnet", 0.25), ("upernet", 0.1), ("fpn", 0.1)]:
        with torch.device("meta"):
            model = vanseg.build_model("van_large", head)
        assert model.backbone.stages[-1].blocks[-1].drop_path.drop_prob == pytest.approx(rate)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("hw", [(64, 64), (65, 47)])
def test_forward_shapes(head: str, hw: tuple[int, int]) -> None:
    model = vanseg.build_model("van_test", head, num_classes=5, overrides=NARROW[head]).eval()
    images = torch.randn(1, 3, *hw)
    with torch.no_grad():
        assert model(images).shape == (1, 5, *hw)
    model.train()
    out = model.forward_train(torch.randn(2, 3, 64, 64))
    s = HEAD_STRIDE[head]
    assert out["logits"].shape == (2, 5, 64 // s, 64 // s)
    assert ("aux_logits" in out) == (head in HAS_AUX)
    if head in HAS_AUX:
        aux_stride = 8 if head == "hamnet" else 16
        assert out["aux_logits"].shape == (2, 5, 64 // aux_stride, 64 // aux_stride)


@pytest.mark.parametrize("head", HEADS)
def test_backward(head: str) -> None:
    model = vanseg.build_model("van_test", head, num_classes=5, overrides=NARROW[head]).train()
    out = model.forward_train(torch.randn(2, 3, 64, 64))
    sum(v.square().mean() for v in out.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_heads_classify_with_channel_dropout_and_small_init() -> None:
    model = vanseg.build_model("van_tiny", "upernet")
    for h in (model.decode_head, model.auxiliary_head):
        assert isinstance(h, DecodeHead)
        assert isinstance(h.dropout, torch.nn.Dropout2d) and h.dropout.p == 0.1
        assert h.conv_seg.weight.std().item() == pytest.approx(0.01, rel=0.1)
        assert torch.all(h.conv_seg.bias == 0)
    # first entry of each head's state dict is its classifier, as in mmseg checkpoints
    keys = list(model.state_dict())
    assert keys[keys.index(next(k for k in keys if k.startswith("decode_head")))] == (
        "decode_head.conv_seg.weight"
    )


def test_light_ham_widths_per_size() -> None:
    with torch.device("meta"):
        tiny = vanseg.build_model("van_tiny", "light_ham").decode_head
        base = vanseg.build_model("van_base", "light_ham").decode_head
        d256 = vanseg.build_model("van_tiny", "light_ham_d256").decode_head
    assert tiny.squeeze.conv.weight.shape == (480, 480, 1, 1)
    assert tiny.align.conv.weight.shape == (512, 480, 1, 1)
    assert base.squeeze.conv.weight.shape == (512, 960, 1, 1)
    assert d256.align.conv.weight.shape == (256, 256, 1, 1)
    assert d256.hamburger.ham.rank == 16 and base.hamburger.ham.rank == 64
