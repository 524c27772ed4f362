"""vanseg.optimize: same logits as the plain model (1e-4 relative in fp32), model untouched."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn

import vanseg
from vanseg.accel.fold import fold_batchnorm
from vanseg.accel.optimize import max_relative_difference, optimize
from vanseg.config.compose import compose_config, model_config
from vanseg.errors import ConfigError
from vanseg.models import FPN, FCNHead, FPNHead, HamHead, LightHamHead, Segmentor, UPerHead
from vanseg.models.backbones.van_variants import van_test
from vanseg.tasks.evaluate import run_eval

K = 5


def _randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics, affines and layer scales, so folding has work to do."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_scale" in name:
                p.copy_(torch.rand(p.shape, generator=g) * 0.5)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


HEADS = {
    "light_ham": dict(head=partial(LightHamHead, num_classes=K, ham_channels=64, channels=64)),
    "hamnet": dict(head=partial(HamHead, num_classes=K, channels=64, rank=8)),
    "upernet": dict(
        head=partial(UPerHead, num_classes=K, channels=32),
        aux_head=partial(FCNHead, num_classes=K, channels=16),
    ),
    "fpn": dict(
        neck=partial(FPN, out_channels=32), head=partial(FPNHead, num_classes=K, channels=32)
    ),
}


def _model(head: str) -> Segmentor:
    strides = (4, 2, 1, 1) if head == "hamnet" else (4, 2, 2, 2)
    torch.manual_seed(0)
    return _randomise_norms(Segmentor(van_test(strides=strides), **HEADS[head]))


def _logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(123)  # the NMF bases: same draw for both models
    with torch.inference_mode():
        return model(images)


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("channels_last", [True, False])
def test_fp32_fast_path_matches_the_plain_model(head: str, channels_last: bool) -> None:
    model = _model(head)
    images = torch.randn(2, 3, 64, 48)
    plain = _logits(model, images)
    fast = _logits(optimize(model, "fp32", channels_last=channels_last), images)
    assert fast.dtype == torch.float32 and fast.shape == plain.shape == (2, K, 64, 48)
    assert max_relative_difference(plain, fast) <= 1e-4


def test_the_model_passed_in_is_not_modified() -> None:
    model = _model("upernet").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimize(model, "bf16")
    assert model.training and model.auxiliary_head is not None
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in model.parameters())


def test_fold_batchnorm_equals_conv_then_batchnorm() -> None:
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    bn = _randomise_norms(nn.Sequential(nn.BatchNorm2d(6)))[0]
    x = torch.randn(2, 4, 9, 7)
    # BN by its definition: (y - mean) / sqrt(var + eps) * weight + bias
    y = conv(x)
    m, v = bn.running_mean.view(1, -1, 1, 1), bn.running_var.view(1, -1, 1, 1)
    expected = (y - m) / torch.sqrt(v + bn.eps) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(
        1, -1, 1, 1
    )
    torch.testing.assert_close(fold_batchnorm(conv, bn)(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_gives_float32_logits_close_to_fp32(precision: str) -> None:
    model = _model("light_ham")
    images = torch.randn(1, 3, 64, 64)
    plain = _logits(model, images)
    fast = _logits(optimize(model, precision), images)
    assert fast.dtype == torch.float32 and torch.isfinite(fast).all()
    # bf16 keeps 8 mantissa bits: a few percent of the logit range at most
    assert max_relative_difference(plain, fast) < 0.1


def test_unknown_precision_is_a_user_error_naming_the_option() -> None:
    with pytest.raises(ConfigError, match="precision.*fp8"):
        optimize(_model("fpn"), "fp8")  # type: ignore[arg-type]


def test_only_segmentors_are_accepted() -> None:
    with pytest.raises(ConfigError, match="Segmentor"):
        optimize(nn.Conv2d(3, 3, 1))  # type: ignore[arg-type]


@pytest.mark.slow
def test_compiled_fast_path_matches_the_plain_model() -> None:
    model = _model("light_ham")
    images = torch.randn(1, 3, 64, 64)
    plain = _logits(model, images)
    fast = _logits(optimize(model, "fp32", compile=True), images)
    assert max_relative_difference(plain, fast) <= 1e-4


@pytest.fixture(scope="module")
def eval_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A van_test + Light-Ham checkpoint and a generated 5-class validation set."""
    model_overrides = ["backbone=van_test", "head=light_ham", "head.channels=32"]
    cfg = compose_config([*model_overrides, f"data.num_classes={K}", "backbone.pretrained=null"])
    torch.manual_seed(0)
    model = _randomise_norms(vanseg.build_model_from_config(model_config(cfg)))
    ckpt = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    vanseg.save_model(model, model_config(cfg), ckpt)
    data = [
        "data=synthetic",
        f"data.cache_dir={tmp_path_factory.mktemp('synthetic')}",
        f"data.num_classes={K}",
        "data.num_train=2",
        "data.num_val=4",
        "data.min_side=64",
        "data.max_side=96",
        "data.eval_scale=[256,64]",
    ]
    return ckpt, data


def test_eval_precision_and_fast_options(eval_setup, tmp_path: Path) -> None:
    ckpt, data = eval_setup
    results = {}
    for name, extra in {
        "plain": [],
        "fast": ["inference.fast=true"],
        "bf16": ["inference.fast=true", "inference.precision=bf16"],
    }.items():
        out = tmp_path / name
        overrides = [f"ckpt_path={ckpt}", f"output={out}", "progress=false", "eval_seed=0", *data]
        result = run_eval(compose_config([*overrides, *extra], config_name="eval"), overrides)
        saved = json.loads((out / "metrics.json").read_text())
        assert saved["fast"] == ("inference.fast=true" in extra)
        results[name] = 100 * result.metrics["mIoU"]
    assert results["fast"] == pytest.approx(results["plain"], abs=0.05)
    assert results["bf16"] == pytest.approx(results["plain"], abs=0.5)


def test_bad_precision_option_names_it(eval_setup, tmp_path: Path) -> None:
    ckpt, data = eval_setup
    overrides = [f"ckpt_path={ckpt}", f"output={tmp_path}", "inference.precision=fp8", *data]
    with pytest.raises(ConfigError, match="inference.precision"):
        run_eval(compose_config(overrides, config_name="eval"), overrides)


def test_wide_head_convs_run_winograd_with_the_same_logits(monkeypatch) -> None:
    """UperNet's 3x3 convs through Winograd (thresholds lowered to this small model)."""
    import importlib

    from vanseg.accel.winograd import WinogradConv2d

    module = importlib.import_module("vanseg.accel.optimize")  # `vanseg.optimize` is the function
    monkeypatch.setattr(module, "WINOGRAD_MIN_CHANNELS", 32)
    monkeypatch.setattr(
        module, "WinogradConv2d", partial(WinogradConv2d, min_gmacs=0.0, min_side=1)
    )
    model = _model("upernet")
    images = torch.randn(1, 3, 64, 48)
    plain = _logits(model, images)
    for precision, bound in (("fp32", 1e-4), ("bf16", 0.1)):
        fast = optimize(model, precision)
        swapped = [m for m in fast.modules() if isinstance(m, WinogradConv2d)]
        assert len(swapped) == 5  # bottleneck, 3 fpn_convs, fpn_bottleneck
        assert all(m.tile == (4 if precision == "fp32" else 2) for m in swapped)
        assert max_relative_difference(plain, _logits(fast, images)) <= bound
