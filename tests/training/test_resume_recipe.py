"""A changed recipe on resume: applied, refused or warned, never silently mixed (issue 19.4)."""

from __future__ import annotations

import pytest
import torch

from tests.training.test_train import _run
from vanseg.errors import CheckpointError
from vanseg.training.schedules import poly_factor


@pytest.fixture
def half_way(fast_train_overrides, tmp_path):
    """A 4-step run; its step-2 checkpoint is the resume point."""
    _run([*fast_train_overrides, f"paths.output_dir={tmp_path / 'first'}"])
    return tmp_path / "first" / "checkpoints" / "step_000002.ckpt"


def _resume(overrides, tmp_path, ckpt, *extra):
    return _run([*overrides, f"paths.output_dir={tmp_path / 'resumed'}", f"ckpt_path={ckpt}",
                 *extra])  # fmt: skip


def test_a_new_lr_is_applied_from_the_resumed_step(
    fast_train_overrides, half_way, tmp_path, caplog
):
    with caplog.at_level("INFO", logger="vanseg"):
        _resume(fast_train_overrides, tmp_path, half_way, "optimizer.lr=1e-5",
                "trainer.max_steps=6")  # fmt: skip
    step4 = torch.load(tmp_path / "resumed" / "checkpoints" / "step_000004.ckpt",
                       weights_only=True)  # fmt: skip
    scheduler = step4["lr_schedulers"][0]
    assert scheduler["base_lrs"] == [1e-5] * len(scheduler["base_lrs"])
    # after 4 optimizer steps: the new base lr on the new 6-step schedule (warm-up 2, conftest)
    lr = step4["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr == pytest.approx(1e-5 * poly_factor(4, 6, 1.0, 0.0, 2, 1e-6), rel=1e-9)
    assert lr > 0
    assert any("optimizer.lr: 0.001 in the checkpoint, 1e-05 now" in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_a_changed_batch_size_or_dataset_is_warned(
    fast_train_overrides, half_way, tmp_path, caplog
):
    with caplog.at_level("WARNING", logger="vanseg"):
        _resume(fast_train_overrides, tmp_path, half_way, "data.batch_size_per_gpu=1")
    assert any("data.batch_size_per_gpu: 2 in the checkpoint, 1 now" in r.getMessage()
               and "global batch" in r.getMessage() for r in caplog.records)  # fmt: skip


def test_a_changed_ignore_index_is_refused(fast_train_overrides, half_way, tmp_path):
    with pytest.raises(
        CheckpointError, match=r"data\.ignore_index: 255 in the checkpoint, 254 now"
    ):
        _resume(fast_train_overrides, tmp_path, half_way, "data.ignore_index=254")
