"""A text log of training progress, one line per interval, for files and batch jobs.

In the spirit of mmseg's text logger: every ``trainer.log_every_n_steps`` optimizer steps (and
at the last step) rank 0 logs

``step 50/160000 | lr 5.94e-05 | loss 2.3141 (decode 2.1103, aux 0.5095) | 0.412 s/step
(data 0.003) | eta 18:14:02 | mem 5.1 GiB``

through Python logging (so it reaches ``train.log``), with losses and times averaged over the
interval; every validation adds ``val step ... | mIoU ... | mAcc ... | aAcc ...``. Memory is the
CUDA peak on a GPU, the process's resident size on CPU.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
from datetime import timedelta
from typing import Any

import pytorch_lightning as pl
import torch

__all__ = ["TextProgressLog", "PROGRESS_LOGGER", "format_eta", "memory_gib"]

#: Name of the logger that carries the progress lines (a console filter can drop them while a
#: progress bar is drawn on a terminal; the log file keeps them).
PROGRESS_LOGGER = "vanseg.progress"

log = logging.getLogger(PROGRESS_LOGGER)

#: Logged training metrics shown in the line, and their short names.
_LOSSES = (("train/loss", "loss"), ("train/decode_loss", "decode"), ("train/aux_loss", "aux"))


def format_eta(seconds: float) -> str:
    """``H:MM:SS`` (hours may exceed 24), as mmseg prints it."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _resident_bytes() -> int:
    """Current resident set size of this process (Linux ``/proc``), else its peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def memory_gib(device: torch.device) -> float:
    """CUDA peak allocated memory on a GPU, the process's resident size otherwise, in GiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return _resident_bytes() / 2**30


class TextProgressLog(pl.Callback):
    """Logs training progress and validation metrics as text lines (rank 0 only).

    Args:
        every_n_steps: Interval in optimizer steps; ``None`` uses ``trainer.log_every_n_steps``.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        self.every_n_steps = every_n_steps
        self._reset_window()
        self._last_end: float | None = None
        self._batch_start: float | None = None
        self._fit_start = 0.0

    def _reset_window(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0
        self._step_time = 0.0
        self._data_time = 0.0
        self._timed = 0

    def _interval(self, trainer: pl.Trainer) -> int:
        return max(1, int(self.every_n_steps or trainer.log_every_n_steps or 1))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = time.perf_counter()
        self._last_end = None
        self._reset_window()
        if trainer.is_global_zero:
            log.info(
                "training from step %d to %d, a line every %d steps",
                trainer.global_step,
                trainer.max_steps,
                self._interval(trainer),
            )

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch_start = time.perf_counter()
        if self._last_end is not None:  # data loading and loop overhead since the last step
            self._data_time += self._batch_start - self._last_end

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        now = time.perf_counter()
        if self._last_end is not None:
            self._step_time += now - self._last_end
            self._timed += 1
        self._last_end = now
        metrics = trainer.callback_metrics
        for key, name in _LOSSES:
            value = metrics.get(key)
            if value is not None:
                value = value.detach().float()
                self._sums[name] = self._sums.get(name, torch.zeros_like(value)) + value
        self._count += 1
        step = trainer.global_step
        if step % self._interval(trainer) == 0 or step >= trainer.max_steps:
            if trainer.is_global_zero:
                log.info(self._train_line(trainer, pl_module))
            self._reset_window()

    def _train_line(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
        step, max_steps = trainer.global_step, trainer.max_steps
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        mean = {k: float(v) / max(1, self._count) for k, v in self._sums.items()}
        loss = f"loss {mean['loss']:.4f}" if "loss" in mean else "loss n/a"
        parts = [f"{k} {mean[k]:.4f}" for k in ("decode", "aux") if k in mean]
        if parts:
            loss += f" ({', '.join(parts)})"
        fields = [f"step {step}/{max_steps}", f"lr {lr:.2e}", loss]
        if self._timed:
            per_step = self._step_time / self._timed
            data = self._data_time / self._timed
            fields.append(f"{per_step:.3f} s/step (data {data:.3f})")
            fields.append(f"eta {format_eta(per_step * max(0, max_steps - step))}")
        fields.append(f"mem {memory_gib(pl_module.device):.1f} GiB")
        return " | ".join(fields)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the step timer restarts after validation so its time is not counted as a step
        self._last_end = None
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        fields = [f"val step {trainer.global_step}/{trainer.max_steps}"]
        for key in ("mIoU", "mAcc", "aAcc"):
            value = metrics.get(f"val/{key}")
            if value is not None:
                fields.append(f"{key} {float(value):.4f}")
        fields.append(f"{time.perf_counter() - self._val_start:.1f} s")
        log.info(" | ".join(fields))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            took = timedelta(seconds=round(time.perf_counter() - self._fit_start))
            log.info(
                "training stopped at step %d/%d after %s",
                trainer.global_step,
                trainer.max_steps,
                took,
            )
