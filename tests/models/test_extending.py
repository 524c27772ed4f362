"""docs/extending.md, proven: a timm ``features_only`` model is a backbone with no new code.

``conf/backbone/timm_resnet18.yaml`` builds ``timm.create_model("resnet18", features_only=True)``;
the Segmentor reads its ``feature_info`` and every head of ``conf/head/`` composes with it.
"""

from __future__ import annotations

import pytest
import torch

import vanseg
from tests.conftest import config_options
from vanseg.config.compose import compose_config

# ResNet-18's stage widths and strides (He et al. 2016, Table 1: conv2_x..conv5_x).
RESNET18_CHANNELS = (64, 128, 256, 512)
RESNET18_REDUCTIONS = [4, 8, 16, 32]
# For heads that set VAN's output-stride-8 strides: the timm way to ask for output stride 8.
OS8_FOR_TIMM = ["~backbone.strides", "+backbone.output_stride=8"]

pytestmark = pytest.mark.usefixtures("one_thread")


def overrides_for(head: str) -> list[str]:
    """OS8 when the head asks for it, and narrow head widths to keep the test fast."""
    cfg = compose_config(["backbone=timm_resnet18", f"head={head}"])
    out = OS8_FOR_TIMM if "strides" in cfg.backbone else []
    out = [*out, "head.channels=32", "backbone_recipe.light_ham_channels=32"]
    if cfg.get("aux_head"):
        out.append("aux_head.channels=32")
    if cfg.get("neck"):
        out.append("neck.out_channels=32")
    return out


@pytest.mark.parametrize("head", config_options("head"))
def test_timm_resnet18_backbone_with_every_head(head: str) -> None:
    model = vanseg.build_model("timm_resnet18", head, num_classes=3, overrides=overrides_for(head))
    assert type(model.backbone).__module__.startswith("timm.")
    assert model.feature_channels == RESNET18_CHANNELS
    images = torch.randn(2, 3, 64, 64)
    model.train()
    out = model.forward_train(images)
    sum(v.float().square().mean() for v in out.values()).backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.no_grad():
        assert model.eval()(images[:1]).shape == (1, 3, 64, 64)


def test_hamnet_gets_output_stride_8_from_timm() -> None:
    model = vanseg.build_model(
        "timm_resnet18", "hamnet", num_classes=3, overrides=overrides_for("hamnet")
    )
    assert model.backbone.feature_info.reduction() == [4, 8, 8, 8]


def test_default_resnet18_strides() -> None:
    model = vanseg.build_model("timm_resnet18", "fpn", num_classes=3)
    assert model.backbone.feature_info.reduction() == RESNET18_REDUCTIONS


def test_a_backbone_without_feature_info_is_refused() -> None:
    from functools import partial

    from vanseg.models import LightHamHead, Segmentor

    with pytest.raises(TypeError, match="feature_info"):
        Segmentor(torch.nn.Conv2d(3, 8, 1), partial(LightHamHead, num_classes=3))
