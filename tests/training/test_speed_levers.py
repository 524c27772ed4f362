"""Training speed levers: optimizer kernels give the plain loop's update; NHWC training runs."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from vanseg.config.compose import compose_config
from vanseg.tasks.train import train
from vanseg.training.optim import build_optimizer, optimizer_options


def test_auto_picks_the_fused_kernel_on_cpu() -> None:
    assert optimizer_options("auto", nn.Linear(2, 2)) == {"fused": True}
    assert optimizer_options("for_loop", nn.Linear(2, 2)) == {"foreach": False}
    assert optimizer_options("foreach", nn.Linear(2, 2)) == {"foreach": True}
    with pytest.raises(ValueError, match="optimizer impl.*turbo"):
        optimizer_options("turbo", nn.Linear(2, 2))


@pytest.mark.parametrize("impl", ["fused", "foreach"])
def test_kernels_make_the_same_adamw_steps_as_the_for_loop(impl: str) -> None:
    torch.manual_seed(0)
    # no conv bias before a norm: its gradient is rounding noise, which Adam amplifies to lr
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    models = {name: [p.detach().clone() for p in model.parameters()] for name in ("ref", impl)}
    x = torch.randn(2, 3, 8, 8)
    for name in models:
        with torch.no_grad():
            for p, v in zip(model.parameters(), models[name], strict=True):
                p.copy_(v)
        adamw = partial(torch.optim.AdamW, lr=1e-2, weight_decay=0.01)
        opt = build_optimizer(model, adamw, impl="for_loop" if name == "ref" else impl)
        for _ in range(3):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
        models[name] = [p.detach().clone() for p in model.parameters()]
    for a, b in zip(models["ref"], models[impl], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_channels_last_training_runs(fast_train_overrides) -> None:
    overrides = [*fast_train_overrides, "module.channels_last=true", "trainer.max_steps=2"]
    result = train(compose_config(overrides))
    assert result["steps"] == 2


def test_loss_of_channels_last_logits_is_the_nchw_loss() -> None:
    """Cross-entropy by its definition on the resized logits, for either layout."""
    from vanseg.training.module import segmentation_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 6, 7)
    mask = torch.randint(0, 5, (2, 24, 28))
    mask[0, :3] = 255
    up = nn.functional.interpolate(logits, size=(24, 28), mode="bilinear", align_corners=False)
    nll = -up.log_softmax(1).gather(1, mask.clamp(max=4)[:, None])[:, 0]
    expected = torch.where(mask == 255, 0.0, nll).sum() / mask.numel()
    for layout in (torch.contiguous_format, torch.channels_last):
        loss = segmentation_loss(logits.contiguous(memory_format=layout), mask)
        torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
