"""Checkpoint bookkeeping across resumes and failures.

* :class:`BestCheckpoint` keeps tracking the best score after a resume into a new run folder
  (Lightning forgets it when the folder changes, so a worse later score became "best").
* :func:`keep_finite_checkpoint` is called after a non-finite loss: it makes ``last.ckpt`` the
  newest checkpoint whose weights predate the bad step, and moves newer ones aside.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.callbacks import ModelCheckpoint

__all__ = ["BestCheckpoint", "keep_finite_checkpoint", "checkpoint_step"]

log = logging.getLogger("vanseg")


class BestCheckpoint(ModelCheckpoint):
    """A :class:`ModelCheckpoint` whose best score and path survive a resume in another folder.

    The earlier best file stays where it is (Lightning never deletes files outside ``dirpath``);
    a new checkpoint is written only when the monitored score beats it.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        stored_dir = state_dict.get("dirpath", self.dirpath)
        if stored_dir == self.dirpath:
            super().load_state_dict(state_dict)
            return
        with warnings.catch_warnings():  # "dirpath has changed": handled below
            warnings.simplefilter("ignore", UserWarning)
            super().load_state_dict(state_dict)
        score, path = state_dict.get("best_model_score"), state_dict.get("best_model_path")
        if score is None or not path or state_dict.get("monitor") != self.monitor:
            return
        self.best_model_score = score
        self.best_model_path = path
        self.best_k_models = {path: score}
        self.kth_best_model_path = path
        self.kth_value = score
        log.info("best %s so far: %.4f (%s)", self.monitor, float(score), path)


def checkpoint_step(path: Path) -> int:
    """The ``global_step`` stored in a Lightning checkpoint."""
    return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True)["global_step"])


def _finite(path: Path) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)["state_dict"]
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def keep_finite_checkpoint(ckpt_dir: Path, bad_step: int) -> Path | None:
    """After a non-finite loss at ``bad_step``: the newest checkpoint from before it.

    Checkpoints of ``bad_step`` or later hold the weights that produced the bad loss (or newer
    ones); they are renamed to ``nonfinite_<name>`` (kept for inspection, never taken by
    ``ckpt_path=last``), and ``last.ckpt`` becomes a copy of the newest earlier checkpoint with
    finite weights. Returns that checkpoint, or None if there is none.
    """
    if not ckpt_dir.is_dir():
        return None
    good: list[tuple[int, Path]] = []
    for path in sorted(ckpt_dir.glob("*.ckpt")):
        if path.name.startswith("nonfinite_"):
            continue
        step = checkpoint_step(path)
        if step >= bad_step or not _finite(path):
            path.rename(path.with_name(f"nonfinite_{path.name}"))
            log.warning("moved %s (step %d, not before the bad step) aside", path.name, step)
        elif path.name != "last.ckpt":
            good.append((step, path))
    last = ckpt_dir / "last.ckpt"
    if last.is_file():
        good.append((checkpoint_step(last), last))
    if not good:
        return None
    step, best = max(good, key=lambda sp: (sp[0], sp[1].name != "last.ckpt"))
    if best != last and not (last.is_file() and checkpoint_step(last) == step):
        tmp = last.with_name(".last.ckpt.tmp")
        tmp.write_bytes(best.read_bytes())
        os.replace(tmp, last)
    return best
