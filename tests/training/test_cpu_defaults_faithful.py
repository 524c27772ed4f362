"""The CPU training defaults compute the same first step as the plain path (issue 25).

``module.channels_last=auto`` (NHWC) and ``module.banded_loss=auto`` (cross-entropy in bands of
rows) are on by default on CPU. Both change only the order of float32 operations, so their
first-step gradients must be as close to a float64 run as those of the plain options (NCHW,
materialised loss): within 2x of the plain path's error (L2 norm), tensor by tensor, or at
the level of float32 summation-order noise (the floors below). (Layouts are
compared against float64, not against each other: some BN gradients are ill-conditioned in
float32 whatever the layout, docs/pitfalls.md.)
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import vanseg
from tests.models.test_heads import NARROW
from vanseg.training.module import banded_loss_default, channels_last_default, loss_terms

CPU = torch.device("cpu")
AUX_WEIGHT = 0.4  # conf/module/segmentation.yaml
EPS = torch.finfo(torch.float32).eps
#: Errors this small are the order of a long float32 sum, whatever the path: 32 ulps of the
#: tensor's own size (bias gradients sum over every pixel) ...
ULPS = 32


def first_step_gradients(
    model: nn.Module,
    images: torch.Tensor,
    mask: torch.Tensor,
    dtype: torch.dtype,
    channels_last: bool,
    banded: bool,
) -> dict[str, torch.Tensor]:
    model = copy.deepcopy(model).to(dtype)
    images = images.to(dtype)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    torch.manual_seed(0)  # NMF bases: drawn in float32 from the CPU generator for every dtype
    terms = loss_terms(model, images, mask, banded=banded)
    loss = terms["decode"] + AUX_WEIGHT * terms["aux"] if "aux" in terms else terms["decode"]
    loss.backward()
    return {n: p.grad.double() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("head", ["light_ham", "hamnet", "upernet", "fpn"])
def test_default_cpu_options_are_as_faithful_as_the_plain_ones(head: str) -> None:
    defaults = {"channels_last": channels_last_default(CPU), "banded": banded_loss_default(CPU)}
    assert defaults != {"channels_last": False, "banded": False}  # else nothing to test
    torch.manual_seed(0)
    model = vanseg.build_model("van_test", head, num_classes=5, overrides=NARROW[head]).train()
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = 0.0  # dropout masks are drawn per dtype; the layouts are the question
    images = torch.randn(2, 3, 64, 48)
    mask = torch.randint(0, 5, (2, 64, 48))
    mask[0, :10] = 255

    exact = first_step_gradients(model, images, mask, torch.float64, False, False)
    plain = first_step_gradients(model, images, mask, torch.float32, False, False)
    default = first_step_gradients(model, images, mask, torch.float32, **defaults)
    assert exact.keys() == plain.keys() == default.keys()
    # ... and one ulp of the model's largest gradient per element (tensors whose exact
    # gradient is ~0, e.g. a conv bias right before a BatchNorm, get float32 noise in any path).
    scale = max(g.abs().max().item() for g in exact.values())
    worse = []
    for name, g in exact.items():
        plain_err = (plain[name] - g).norm().item()
        default_err = (default[name] - g).norm().item()
        floor = max(ULPS * EPS * g.norm().item(), EPS * scale * g.numel() ** 0.5)
        if default_err > max(2 * plain_err, floor):
            worse.append(f"{name}: {default_err:.2e} vs plain {plain_err:.2e} (|g| {g.norm():.1e})")
    assert not worse, f"{len(worse)} of {len(exact)} tensors: " + "; ".join(worse[:5])
