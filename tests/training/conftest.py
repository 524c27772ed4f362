"""Fixtures for training tests: a tiny generated dataset and fast overrides."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_data_overrides(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A small generated dataset (cached once per session) with 64x64 crops."""
    cache = tmp_path_factory.mktemp("synthetic")
    return [
        "data=synthetic",
        f"data.cache_dir={cache}",
        "data.num_train=8",
        "data.num_val=3",
        "data.min_side=64",
        "data.max_side=96",
        "data.scale=[256,64]",
        "data.crop_size=[64,64]",
        "data.eval_scale=[256,64]",
        "data.num_workers=0",
        "data.batch_size_per_gpu=2",
    ]


@pytest.fixture
def fast_train_overrides(tiny_data_overrides: list[str], tmp_path: Path) -> list[str]:
    """van_test + a narrow Light-Ham on CPU, 4 steps, writing into tmp_path."""
    return [
        *tiny_data_overrides,
        "trainer=cpu",
        "backbone=van_test",
        "backbone.drop_path_rate=0.1",
        "head=light_ham",
        "head.channels=32",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_model_summary=false",
        "trainer.log_every_n_steps=1",
        "scheduler.warmup_steps=2",
        "optimizer.lr=1e-3",
        "~callbacks.progress_bar",
        "~callbacks.model_summary",
        f"paths.output_dir={tmp_path}",
        f"paths.log_dir={tmp_path}/logs",
    ]


@pytest.fixture
def loss_nan_after_three_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The training loss turns NaN from the 4th call on (optimizer step 3)."""
    from vanseg.training import module

    real = module.segmentation_loss
    calls = {"n": 0}

    def loss_turning_nan(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        return out * float("nan") if calls["n"] > 3 else out

    monkeypatch.setattr(module, "segmentation_loss", loss_turning_nan)
