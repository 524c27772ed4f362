"""No run writes into another run's folder; a run killed before saving can start again
(issue 19.6, 19.7)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.training.test_train import _run
from vanseg.errors import ConfigError
from vanseg.training.run_dir import RunDirGuard


def checksums(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_output_dir_of_a_finished_run_is_refused(fast_train_overrides, tmp_path) -> None:
    _run([*fast_train_overrides, "trainer.max_steps=2"])  # a finished run in tmp_path
    before = checksums(tmp_path)
    with pytest.raises(ConfigError, match=r"paths\.output_dir=.* already holds a run.*last\.ckpt"):
        _run([*fast_train_overrides, "trainer.max_steps=2"])  # a new run, same output_dir
    assert checksums(tmp_path) == before


def _guard(folder: Path, ckpt_path=None):
    config = OmegaConf.create(
        {"hydra": {"run": {"dir": str(folder)}, "output_subdir": ".hydra"}, "trainer": {},
         "ckpt_path": ckpt_path}
    )  # fmt: skip
    RunDirGuard().on_run_start(config)
    return config


def test_a_run_killed_before_its_first_checkpoint_restarts_in_place(tmp_path) -> None:
    run = tmp_path / "slurm-123"
    (run / ".hydra").mkdir(parents=True)
    (run / "train.log").write_text("step 10/160000 ...\n")
    (run / "checkpoints").mkdir()  # Lightning made the folder; kill -9 before the first save
    config = _guard(run)  # the requeued job: no last.ckpt, so no ckpt_path
    assert config.hydra.output_subdir == ".hydra/resume_1"
    assert (run / "train.log").read_text() == "step 10/160000 ...\n"


def test_a_folder_with_checkpoints_is_refused_with_a_hint_that_exists(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step_000010.ckpt").write_bytes(b"x")
    with pytest.raises(SystemExit) as exit_info:
        _guard(run)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "last.ckpt" not in err  # no such file to suggest
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(SystemExit):
        _guard(run)
    assert f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}" in capsys.readouterr().err
