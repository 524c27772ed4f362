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

from vanseg.checkpoint.file import read_checkpoint, stored_step
from vanseg.errors import CheckpointError

__all__ = ["BestCheckpoint", "keep_finite_checkpoint"]

log = logging.getLogger("vanseg")


class BestCheckpoint(ModelCheckpoint):
    """A :class:`ModelCheckpoint` whose best score and path survive a resume in another folder.

    The earlier best file stays where it is (Lightning never deletes files outside ``dirpath``);
    a new checkpoint is written only when the monitored score beats it.
    """

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        self._resume_step = int(checkpoint.get("global_step", 0))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._load_stored_state(state_dict)
        self._adopt_best_on_disk(state_dict.get("dirpath"))

    def _adopt_best_on_disk(self, stored_dir: str | None) -> None:
        """Take the best file of the resumed run that the stored state does not know.

        ``last.ckpt`` and the periodic checkpoint of a validation step are written before
        that validation, so the state they hold predates a best file written at that step.
        Every ``best*.ckpt`` of the resumed folder (and this one) up to the resumed step is
        read (``weights_only=True``) for the score it was saved with.
        """
        step = getattr(self, "_resume_step", None)
        folders = {Path(d) for d in (stored_dir, self.dirpath) if d}
        better = self.mode == "max"
        for path in sorted(p for folder in folders for p in folder.glob("best*.ckpt")):
            score = _saved_best_score(path, step)
            if score is None:
                continue
            current = self.best_model_score
            if current is None or (score > current if better else score < current):
                self.best_model_score = score
                self.best_model_path = str(path)
                self.best_k_models = {str(path): score}
                self.kth_best_model_path = str(path)
                self.kth_value = score
                log.info("best %s so far: %.4f (%s)", self.monitor, float(score), path)

    def _load_stored_state(self, state_dict: dict[str, Any]) -> None:
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


def _saved_best_score(path: Path, max_step: int | None) -> torch.Tensor | None:
    """The monitored score a best checkpoint was saved with (None: unreadable, or later)."""
    try:
        ckpt = read_checkpoint(path, mmap=True)
        if max_step is not None and int(ckpt.get("global_step", 0)) > max_step:
            return None
        for state in (ckpt.get("callbacks") or {}).values():
            if (
                isinstance(state, dict)
                and Path(str(state.get("best_model_path", ""))).name == path.name
                and state.get("best_model_score") is not None
            ):
                return torch.as_tensor(state["best_model_score"]).detach().clone()
    except (CheckpointError, AttributeError, TypeError, ValueError) as err:
        log.warning("cannot read the score of %s: %s", path, err)
    return None


def _step_if_finite(path: Path) -> tuple[int, bool]:
    """``(global_step, all float weights finite)`` of a checkpoint, read once and safely."""
    ckpt = read_checkpoint(path, mmap=True)
    finite = all(
        torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point()
    )
    return int(ckpt["global_step"]), finite


def _move_aside(path: Path, prefix: str) -> None:
    target = path.with_name(f"{prefix}_{path.name}")
    n = 1
    while target.exists():  # never replace an earlier one
        target = path.with_name(f"{prefix}{n}_{path.name}")
        n += 1
    path.rename(target)


def keep_finite_checkpoint(ckpt_dir: Path, bad_step: int) -> Path | None:
    """After a non-finite loss at ``bad_step``: the newest checkpoint from before it.

    Checkpoints of ``bad_step`` or later hold the weights that produced the bad loss (or newer
    ones); they are renamed to ``nonfinite_<name>`` (kept for inspection, never taken by
    ``ckpt_path=last``), and ``last.ckpt`` becomes a copy of the newest earlier checkpoint with
    finite weights. Every file is read with ``weights_only=True``; one that cannot be read that
    way (damaged, or holding pickled objects) is renamed to ``unreadable_<name>`` with one log
    line, never unpickled. Returns that checkpoint, or None if there is none.
    """
    if not ckpt_dir.is_dir():
        return None
    good: list[tuple[int, Path]] = []
    for path in sorted(ckpt_dir.glob("*.ckpt")):
        if path.name.startswith(("nonfinite_", "unreadable_")):
            continue
        try:
            step, finite = _step_if_finite(path)
        except (CheckpointError, KeyError, TypeError, AttributeError) as err:
            reason = err if isinstance(err, CheckpointError) else f"no {err} entry"
            log.warning("moved %s aside as unreadable_%s: %s", path.name, path.name, reason)
            _move_aside(path, "unreadable")
            continue
        if step >= bad_step or not finite:
            _move_aside(path, "nonfinite")
            log.warning("moved %s (step %d, not before the bad step) aside", path.name, step)
        else:
            good.append((step, path))
    if not good:
        return None
    step, best = max(good, key=lambda sp: (sp[0], sp[1].name != "last.ckpt"))
    last = ckpt_dir / "last.ckpt"
    if best != last and not (last.is_file() and stored_step(last) == step):
        tmp = last.with_name(".last.ckpt.tmp")
        tmp.write_bytes(best.read_bytes())
        os.replace(tmp, last)
    return best
