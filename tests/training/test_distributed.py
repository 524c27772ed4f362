"""Slow end-to-end runs through train.py: 2-process CPU DDP and a Hydra multirun sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vanseg.config.compose import config_dir

ROOT = config_dir().parent


def _train(args: list[str], tmp_path: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"train.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def _small(tiny_data_overrides: list[str]) -> list[str]:
    return [
        *tiny_data_overrides,
        "backbone=van_test",
        "head=light_ham",
        "head.channels=32",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "trainer.num_sanity_val_steps=0",
        "~callbacks.progress_bar",
        "~callbacks.model_summary",
        "trainer.enable_model_summary=false",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_two_process_cpu_ddp(tiny_data_overrides: list[str], tmp_path: Path, compile: bool) -> None:
    run_dir = tmp_path / "ddp"
    _train(
        [
            *_small(tiny_data_overrides),
            f"module.compile={str(compile).lower()}",
            "trainer=ddp_cpu",
            "trainer.devices=2",
            f"hydra.run.dir={run_dir}",
        ],
        tmp_path,
        timeout=1800 if compile else 600,  # inductor compiles once per rank
    )
    result = json.loads((run_dir / "results.json").read_text())
    assert result["steps"] == 4 and 0 <= result["metrics"]["val/mIoU"] <= 1
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    # side effects happen once: one results file and one CSV log, on rank 0
    assert len(list(tmp_path.rglob("results.json"))) == 1
    assert len(list(tmp_path.rglob("metrics.csv"))) == 1
    hparams = (run_dir / "csv" / "hparams.yaml").read_text()
    assert "global_batch_size: 4" in hparams  # 2 per process x 2 processes


@pytest.mark.slow
def test_multirun_sweep_writes_a_summary(tiny_data_overrides: list[str], tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = [a for a in _small(tiny_data_overrides) if not a.startswith(("backbone=", "head"))]
    proc = _train(
        [
            "-m",
            "backbone=van_test",
            "head=light_ham,fpn",
            "trainer=cpu",
            "trainer.max_steps=2",
            *[a for a in args if "max_steps" not in a],
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
    )
    summary = json.loads((sweep / "summary.json").read_text())
    assert [row["job"] for row in summary] == ["0", "1"]
    assert all("val/mIoU" in row["metrics"] for row in summary)
    assert "Sweep summary (2 jobs" in proc.stdout


@pytest.mark.slow
def test_a_failed_job_does_not_stop_the_sweep(tiny_data_overrides: list[str], tmp_path: Path):
    """Issue 19.8: job 1 (lr=0) fails; jobs 0 and 2 still run, the summary lists the failure
    with its error line, and the sweep exits with status 2."""
    sweep = tmp_path / "sweep"
    args = [a for a in _small(tiny_data_overrides) if "max_steps" not in a]
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", "optimizer.lr=1e-3,0,2e-3", "trainer=cpu",
         "trainer.max_steps=2", *args, f"hydra.sweep.dir={sweep}"],
        cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads((sweep / "summary.json").read_text())
    assert [row["job"] for row in summary] == ["0", "1", "2"]
    assert "val/mIoU" in summary[0]["metrics"] and "val/mIoU" in summary[2]["metrics"]
    assert summary[1]["failed"] and "optimizer.lr" in summary[1]["error"]
    assert "job 1: FAILED" in proc.stdout and "1 of 3 jobs failed" in proc.stderr


def test_multirun_with_in_process_ddp_is_refused(tiny_data_overrides, tmp_path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            "head=light_ham,fpn",
            "trainer=ddp_cpu",
            f"hydra.sweep.dir={tmp_path}",
            *tiny_data_overrides,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "cannot be combined with in-process multi-device DDP" in proc.stderr + proc.stdout


@pytest.mark.slow
def test_optuna_search_runs(tiny_data_overrides: list[str], tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    args = [a for a in _small(tiny_data_overrides) if "max_steps" not in a]
    proc = _train(
        [
            "-m",
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
            "trainer=cpu",
            "trainer.max_steps=2",
            *args,
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
    )
    assert "Best parameters" in proc.stdout + proc.stderr
    rows = json.loads((sweep / "summary.json").read_text())
    assert len(rows) == 2 and len({r["overrides"][0] for r in rows}) == 2  # two different lrs
