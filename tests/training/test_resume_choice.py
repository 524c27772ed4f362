"""``ckpt_path=last`` picks the newest checkpoint by its stored step (issue 19.3)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from tests.training.test_train import _run
from vanseg.training.resume import checkpoints_newest_first, newest_intact_checkpoint


def _ckpt(path: Path, step: int, mtime: float) -> Path:
    torch.save({"global_step": step, "state_dict": {"w": torch.full((2,), float(step))}}, path)
    os.utime(path, (mtime, mtime))
    return path


def test_a_stale_last_ckpt_loses_to_a_newer_step(tmp_path: Path) -> None:
    # kill -9 during the save of step 8: step_000008.ckpt was renamed into place, last.ckpt
    # still holds step 4 (and is even the newest file by time).
    _ckpt(tmp_path / "last.ckpt", 4, 3_000)
    newer = _ckpt(tmp_path / "step_000008.ckpt", 8, 2_000)
    _ckpt(tmp_path / "step_000004.ckpt", 4, 1_000)
    assert newest_intact_checkpoint(checkpoints_newest_first([tmp_path])) == newer


def test_lightnings_last_v1_counts_by_its_step(tmp_path: Path) -> None:
    _ckpt(tmp_path / "last.ckpt", 4, 1_000)
    v1 = _ckpt(tmp_path / "last-v1.ckpt", 6, 2_000)
    _ckpt(tmp_path / "best_step_000002_miou_0.5000.ckpt", 2, 3_000)
    assert newest_intact_checkpoint(checkpoints_newest_first([tmp_path])) == v1


def test_at_the_same_step_last_ckpt_is_taken(tmp_path: Path) -> None:
    last = _ckpt(tmp_path / "last.ckpt", 8, 1_000)
    _ckpt(tmp_path / "step_000008.ckpt", 8, 2_000)
    _ckpt(tmp_path / "best_step_000008_miou_0.5000.ckpt", 8, 3_000)
    assert newest_intact_checkpoint(checkpoints_newest_first([tmp_path])) == last


def test_a_killed_save_leaves_no_temporary_file(fast_train_overrides, tmp_path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    partial = folder / ".last.ckpt.k3j2h1.tmp"
    partial.write_bytes(b"PK\x03\x04 half a checkpoint")
    _run([*fast_train_overrides, "trainer.max_steps=2"])
    assert not partial.exists()
    assert (folder / "last.ckpt").is_file()
