"""The final step is saved and validated; no numbers without a validation (issue 19.2, 19.9)."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from tests.training.test_train import _run
from vanseg.training.signals import TrainingInterrupted
from vanseg.training.text_log import TextProgressLog


def test_steps_after_the_last_interval_are_saved_validated_and_resumable(
    fast_train_overrides, tmp_path
) -> None:
    result = _run([*fast_train_overrides, "trainer.max_steps=5"])  # checkpoints every 2 steps
    ckpts = tmp_path / "checkpoints"
    last = torch.load(ckpts / "last.ckpt", weights_only=True)
    assert result["steps"] == 5 == last["global_step"]
    assert (ckpts / "step_000005.ckpt").is_file()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["steps"] == 5 and 0.0 <= saved["metrics"]["val/mIoU"] <= 1.0
    resumed = _run([*fast_train_overrides, "trainer.max_steps=6", f"ckpt_path={ckpts}/last.ckpt",
                    f"paths.output_dir={tmp_path / 'more'}"])  # fmt: skip
    assert resumed["steps"] == 6


def test_a_run_shorter_than_the_interval_is_validated_at_its_end(
    fast_train_overrides, tmp_path
) -> None:
    result = _run([*fast_train_overrides, "trainer.max_steps=1"])
    assert result["steps"] == 1 and set(result["metrics"]) >= {"val/mIoU", "val/aAcc"}
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 1


def _sigterm_at_step_1(self, trainer, pl_module, batch, batch_idx) -> None:
    if trainer.global_step == 1:
        os.kill(os.getpid(), signal.SIGTERM)


def test_a_stop_before_any_validation_reports_no_metrics(
    fast_train_overrides, tmp_path, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(TextProgressLog, "on_train_batch_start", _sigterm_at_step_1, False)
    with caplog.at_level("INFO", logger="vanseg"), pytest.raises(TrainingInterrupted):
        _run([*fast_train_overrides, "trainer.num_sanity_val_steps=2"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["metrics"] == {}
    messages = [r.getMessage() for r in caplog.records]
    assert any("No validation ran" in m for m in messages)
    assert not any("IoU" in m for m in messages)
