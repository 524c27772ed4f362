"""End-to-end training on CPU: a short run, exact resume, loggers, errors."""

from __future__ import annotations

import math
import os
import signal

import pytest
import torch

import vanseg
from vanseg.config.compose import compose_config
from vanseg.errors import CheckpointError, ConfigError
from vanseg.tasks.train import train
from vanseg.training.signals import TrainingInterrupted
from vanseg.training.text_log import TextProgressLog


def _run(overrides: list[str]) -> dict:
    return train(compose_config(overrides))


def test_short_run_writes_checkpoints_results_and_logs(fast_train_overrides, tmp_path) -> None:
    result = _run([*fast_train_overrides, "logger=csv_tensorboard"])
    assert result["steps"] == 4
    assert 0.0 <= result["metrics"]["val/mIoU"] <= 1.0
    ckpts = tmp_path / "checkpoints"
    assert {p.name for p in ckpts.glob("step_*.ckpt")} == {"step_000002.ckpt", "step_000004.ckpt"}
    assert (ckpts / "last.ckpt").is_file() and result["best_checkpoint"]
    assert (tmp_path / "results.json").is_file()
    metrics = (tmp_path / "csv" / "metrics.csv").read_text()
    for key in ("train/loss", "train/lr", "val/mIoU", "val/mAcc", "val/aAcc"):
        assert key in metrics
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    # the checkpoint rebuilds the model on its own
    model = vanseg.load_model(ckpts / "last.ckpt")
    assert model.num_classes == 8 and not model.training


def _sigterm_during_validation(self, trainer, *args, **kwargs) -> None:
    if not trainer.sanity_checking and trainer.global_step == 2:
        os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("start", ["periodic", pytest.param("signal", marks=pytest.mark.slow)])
def test_resume_is_exact(fast_train_overrides, tmp_path, monkeypatch, start) -> None:
    _check_exact_resume(fast_train_overrides, tmp_path, monkeypatch, start)


@pytest.mark.slow
def test_resume_is_exact_with_compile(fast_train_overrides, tmp_path, monkeypatch) -> None:
    _check_exact_resume([*fast_train_overrides, "module.compile=true"], tmp_path, monkeypatch)


def _check_exact_resume(overrides: list[str], tmp_path, monkeypatch, start="periodic") -> None:
    straight = tmp_path / "straight"
    _run([*overrides, f"paths.output_dir={straight}"])
    resumed = tmp_path / "resumed"
    half = straight / "checkpoints" / "step_000002.ckpt"
    if start == "signal":  # SIGTERM in the validation of step 2: the stop saves that step
        stopped = tmp_path / "stopped"
        with monkeypatch.context() as m:
            m.setattr(
                TextProgressLog, "on_validation_batch_start", _sigterm_during_validation, False
            )
            with pytest.raises(TrainingInterrupted, match="stopped at step 2") as err:
                _run([*overrides, f"paths.output_dir={stopped}"])
        assert err.value.exit_code == 143
        half = stopped / "checkpoints" / "last.ckpt"
        assert torch.load(half, weights_only=False)["global_step"] == 2
    _run([*overrides, f"paths.output_dir={resumed}", f"ckpt_path={half}"])
    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] == 4
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == 4
    # the half-way checkpoint differs from the end: the test compares real training
    h = torch.load(half, weights_only=False)["state_dict"]
    assert not all(torch.equal(v, h[k]) for k, v in a["state_dict"].items())


def test_wandb_offline_run_stays_in_the_run_folder(fast_train_overrides, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "not-here"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc credentials
    result = _run(
        [*fast_train_overrides, "logger=wandb", "logger.wandb.name=test", "trainer.max_steps=2"]
    )
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    ckpt = torch.load(result["checkpoint"], weights_only=False)
    assert ckpt["vanseg"]["wandb_run_id"] == runs[0].name.rsplit("-", 1)[-1]


def test_valid_pixel_average_switch(fast_train_overrides) -> None:
    from vanseg.training.module import segmentation_loss

    logits = torch.zeros(1, 4, 2, 2)  # uniform: every valid pixel costs log(4)
    mask = torch.tensor([[[0, 1], [255, 255]]])
    assert segmentation_loss(logits, mask).item() == pytest.approx(math.log(4) / 2)
    assert segmentation_loss(logits, mask, average="valid_pixels").item() == pytest.approx(
        math.log(4)
    )


def test_resume_from_another_model_is_refused(fast_train_overrides, tmp_path) -> None:
    _run([*fast_train_overrides, "trainer.max_steps=2"])
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointError, match="different model: .*head"):
        _run(
            [
                *fast_train_overrides,
                "head=fpn",
                f"ckpt_path={ckpt}",
                f"paths.output_dir={tmp_path}/other",
            ]
        )
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        _run([*fast_train_overrides, f"ckpt_path={tmp_path}/missing.ckpt"])


def test_device_and_data_errors(fast_train_overrides, tmp_path) -> None:
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="trainer.devices=8 asks for 8 GPUs"):
            _run([*fast_train_overrides, "trainer=gpu", "trainer.devices=8"])
    with pytest.raises(ConfigError, match="SyncBatchNorm"):
        _run([*fast_train_overrides, "trainer.sync_batchnorm=true"])
    no_data = [o for o in fast_train_overrides if not o.startswith("data")]
    # the data error comes first, before the (missing) backbone weights are loaded
    with pytest.raises(Exception, match="does-not-exist"):
        _run(
            [
                *no_data,
                "data=ade20k",
                f"data.root={tmp_path}/does-not-exist",
                "backbone.pretrained=/nonexistent/weights.pth",
            ]
        )


@pytest.mark.usefixtures("loss_nan_after_three_steps")
def test_non_finite_loss_stops_with_the_step(fast_train_overrides, tmp_path):
    from vanseg.training import module

    with pytest.raises(module.NonFiniteLossError, match="at step 3") as err:
        _run(fast_train_overrides)
    assert "Last checkpoint: " in str(err.value)  # the last good checkpoint is kept and named
    last = torch.load(str(err.value).rsplit("Last checkpoint: ", 1)[1], weights_only=True)
    assert last["global_step"] == 2
    assert all(
        torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point()
    )


@pytest.mark.slow
def test_bf16_mixed_precision_trains(fast_train_overrides, tmp_path) -> None:
    result = _run([*fast_train_overrides, "trainer.precision=bf16-mixed", "trainer.max_steps=2"])
    assert result["steps"] == 2 and math.isfinite(result["metrics"]["val/mIoU"])
