"""A resume keeps the best checkpoint written at the resumed validation step (issue 19.5)."""

from __future__ import annotations

from pathlib import Path

import torch

from vanseg.training.checkpointing import BestCheckpoint


def _best_file(folder: Path, step: int, score: float) -> Path:
    path = folder / f"best_step_{step:06d}_miou_{score:.4f}.ckpt"
    state = {"best_model_path": str(path), "best_model_score": torch.tensor(score)}
    torch.save({"global_step": step, "callbacks": {"BestCheckpoint{'monitor': 'val/mIoU'}": state}},
               path)  # fmt: skip
    return path


def _callback(folder: Path) -> BestCheckpoint:
    return BestCheckpoint(dirpath=str(folder), monitor="val/mIoU", mode="max", save_top_k=1)


def test_the_best_written_after_last_ckpt_is_not_forgotten(tmp_path: Path) -> None:
    old = tmp_path / "old" / "checkpoints"
    old.mkdir(parents=True)
    _best_file(old, 2, 0.0400)
    best4 = _best_file(old, 4, 0.0552)  # validation of step 4 ran after last.ckpt was saved
    _best_file(old, 6, 0.0900)  # later than the resume point: another future
    # the state inside last.ckpt (step 4) predates that validation: best is step 2
    stored = _callback(old).state_dict()
    stored.update(best_model_score=torch.tensor(0.04),
                  best_model_path=str(old / "best_step_000002_miou_0.0400.ckpt"))  # fmt: skip
    for folder in (old, tmp_path / "new" / "checkpoints"):  # resumed in place or elsewhere
        callback = _callback(folder)
        callback.on_load_checkpoint(None, None, {"global_step": 4})
        callback.load_state_dict(dict(stored))
        assert callback.best_model_path == str(best4)
        assert float(callback.best_model_score) == float(torch.tensor(0.0552))


def test_an_unreadable_best_file_is_named_and_passed_over(tmp_path: Path, caplog) -> None:
    (tmp_path / "best_step_000004_miou_0.9000.ckpt").write_bytes(b"not a checkpoint")
    callback = _callback(tmp_path)
    callback.on_load_checkpoint(None, None, {"global_step": 4})
    with caplog.at_level("WARNING", logger="vanseg"):
        callback.load_state_dict(_callback(tmp_path).state_dict())
    assert callback.best_model_score is None
    assert any("best_step_000004_miou_0.9000.ckpt" in r.getMessage() for r in caplog.records)
