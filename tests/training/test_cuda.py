"""CUDA checks (``make gpu-check`` on a GPU machine; skipped without one).

NMF stays float32 under bf16/fp16 autocast, SyncBatchNorm is converted in a one-process DDP
run, fused AdamW makes the for-loop's steps, channels_last training runs, and resume on CUDA
continues the run it stopped.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from tests.training.test_train import _run
from vanseg.models.layers.matrix_decomposition import NMF2D
from vanseg.training import module as training_module
from vanseg.training.optim import build_optimizer, optimizer_options

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
CUDA = ["trainer=gpu", "trainer.devices=1"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_nmf_runs_in_float32_under_autocast(dtype: torch.dtype) -> None:
    nmf = NMF2D(rank=16).train()
    x = torch.rand(2, 64, 24, 24, device="cuda").to(dtype)
    torch.manual_seed(0)  # the same bases for both (drawn on the CPU generator)
    reference = nmf(x.float())  # float32 throughout
    torch.manual_seed(0)
    with torch.autocast("cuda", dtype=dtype):
        low = nmf(x)
    assert low.dtype == dtype
    # Only the output is rounded to the autocast dtype; updates in bf16/fp16 would drift far
    # beyond that over the multiplicative steps.
    bound = torch.finfo(dtype).eps * reference.abs().max()
    assert (low.float() - reference).abs().max() <= bound


def test_sync_batchnorm_in_one_process_ddp(fast_train_overrides, monkeypatch) -> None:
    seen: dict[str, int] = {}
    real = training_module.SegmentationModule.on_train_start

    def count_norms(self) -> None:
        seen["sync"] = sum(isinstance(m, nn.SyncBatchNorm) for m in self.modules())
        seen["plain"] = sum(type(m) is nn.BatchNorm2d for m in self.modules())
        real(self)

    monkeypatch.setattr(training_module.SegmentationModule, "on_train_start", count_norms)
    overrides = [*fast_train_overrides, "trainer=ddp", "trainer.devices=1", "trainer.max_steps=2"]
    assert _run(overrides)["steps"] == 2
    assert seen["sync"] > 0 and seen["plain"] == 0


def test_fused_adamw_makes_the_for_loop_steps() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 2, 1)).cuda()
    assert optimizer_options("auto", model) == {"fused": True}
    start = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(2, 3, 16, 16, device="cuda")
    after = {}
    for impl in ("for_loop", "auto"):
        with torch.no_grad():
            for p, v in zip(model.parameters(), start, strict=True):
                p.copy_(v)
        opt = build_optimizer(model, partial(torch.optim.AdamW, lr=1e-2), impl=impl)
        for _ in range(3):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
        after[impl] = [p.detach().clone() for p in model.parameters()]
    for a, b in zip(after["for_loop"], after["auto"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_channels_last_training_runs(fast_train_overrides, precision: str) -> None:
    overrides = [*fast_train_overrides, *CUDA, "module.channels_last=true"]
    result = _run([*overrides, f"trainer.precision={precision}", "trainer.max_steps=2"])
    assert result["steps"] == 2 and 0.0 <= result["metrics"]["val/mIoU"] <= 1.0


def test_resume_on_cuda_continues_the_run(fast_train_overrides, tmp_path) -> None:
    """Stop at step 2, resume to 4: the same state as a straight run. The state restored is
    exact (step, schedule, optimizer moments); the two further steps are compared to float
    rounding, since cuDNN's and the bilinear resize's backward kernels may sum in any order
    on CUDA (bitwise resume is tested on CPU, tests/training/test_train.py)."""
    overrides = [*fast_train_overrides, *CUDA]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _run([*overrides, f"paths.output_dir={straight}"])
    half = straight / "checkpoints" / "step_000002.ckpt"
    _run([*overrides, f"paths.output_dir={resumed}", f"ckpt_path={half}"])
    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] == 4
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == 4
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(value, b["state_dict"][key], rtol=1e-4, atol=1e-6, msg=key)
    h = torch.load(half, weights_only=False)["state_dict"]
    assert not all(torch.equal(v, h[k]) for k, v in a["state_dict"].items())
