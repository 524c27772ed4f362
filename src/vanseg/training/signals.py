"""Preemption-safe stops: SIGTERM, SIGINT and SIGUSR1 save a resumable checkpoint and exit.

A signal handler only records the request; the :class:`EmergencyCheckpoint` callback acts at the
next optimizer-step boundary (all ranks agree on it), where the training state is complete, so
resuming from the saved ``last.ckpt`` is bitwise exact like any other resume. It then raises
:class:`TrainingInterrupted`, whose ``exit_code`` the entry point exits with (SIGTERM 143,
SIGINT 130, SIGUSR1 138: ``128 + signal number``, as a shell reports a killed process).

A second SIGINT (Ctrl-C twice) stops at once with ``KeyboardInterrupt``. Under SLURM, SIGUSR1
(``#SBATCH --signal=SIGUSR1@90``) also requeues the job (``scontrol requeue``), replacing
Lightning's own handler, which saves in the middle of a step.

The same callback saves a checkpoint when a dataset file fails while training or validating
(:class:`~vanseg.data.ade20k.DatasetError`), never after a non-finite loss.

Every checkpoint goes through :class:`AtomicCheckpointIO`: a temporary file in the destination
folder renamed into place, so an interrupted save never leaves a broken ``last.ckpt``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException

from vanseg.checkpoint.file import write_checkpoint
from vanseg.errors import VansegError

__all__ = [
    "CheckpointWriteError",
    "AtomicCheckpointIO",
    "EmergencyCheckpoint",
    "StopRequest",
    "TrainingInterrupted",
    "TrainingStopped",
    "STOP_SIGNALS",
    "exit_code",
]

log = logging.getLogger("vanseg")

#: Signals that stop training with a checkpoint.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

#: The emergency checkpoint's name in the run's checkpoint folder (what ``ckpt_path=last`` takes).
LAST_NAME = "last.ckpt"


def exit_code(signum: int) -> int:
    """The shell convention for a process stopped by a signal: ``128 + signum``."""
    return 128 + int(signum)


class TrainingStopped(Exception):
    """Training stopped early; the entry point logs the message and exits with ``exit_code``."""

    exit_code = 1
    step: int | None = None
    checkpoint: str | None = None


class TrainingInterrupted(TrainingStopped):
    """Training stopped on a signal after saving a checkpoint; exit with :attr:`exit_code`."""

    def __init__(self, signum: int, step: int, checkpoint: str | None) -> None:
        self.signum = int(signum)
        self.step = step
        self.checkpoint = checkpoint
        self.exit_code = exit_code(signum)
        name = signal.Signals(signum).name
        saved = f"checkpoint of step {step}: {checkpoint}" if checkpoint else "no checkpoint saved"
        super().__init__(
            f"{name} received: training stopped at step {step}, {saved}. "
            f"Resume with ckpt_path={checkpoint or 'last'}"
        )


class CheckpointWriteError(VansegError, OSError):
    """A checkpoint could not be written (full disk, read-only folder); nothing was replaced."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writes through `vanseg.checkpoint.file.write_checkpoint`.

    A failed write (a full disk: torch reports it as an ``OSError`` or a ``RuntimeError``
    from its zip writer) leaves the earlier file in place and raises `CheckpointWriteError`.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        target = Path(path)
        try:
            write_checkpoint(checkpoint, target)
        except (OSError, RuntimeError) as err:
            cause = getattr(err, "strerror", None) or str(err).strip().splitlines()[0]
            raise CheckpointWriteError(
                f"cannot write checkpoint {target}: {cause}. Nothing was replaced; free disk "
                "space or make the folder writable (or set paths.output_dir), then resume with "
                "ckpt_path=last"
            ) from err


class StopRequest:
    """Records the first stop signal; installed for the duration of ``trainer.fit``."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without a checkpoint
        if self.signum is None:
            self.signum = signum
            log.warning(
                "%s received: saving a checkpoint at the end of this step, then stopping",
                signal.Signals(signum).name,
            )

    def install(self) -> None:
        """Install the handlers (main thread only: Python delivers signals there)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}


def _slurm_requeue() -> None:
    """``scontrol requeue`` this job (array tasks by ``<array job>_<task>``)."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
    try:
        result = subprocess.run(["scontrol", "requeue", job], check=False).returncode
    except OSError as err:
        log.error("could not requeue SLURM job %s: %s", job, err)
        return
    if result == 0:
        log.info("requeued SLURM job %s", job)
    else:
        log.error("scontrol requeue %s failed with status %d", job, result)


class EmergencyCheckpoint(pl.Callback):
    """Saves ``checkpoints/last.ckpt`` at the current step when training must stop early.

    Args:
        dirpath: The run's checkpoint folder.
        stop: The signal recorder; the callback checks it after every optimizer step.
        keep_on: Exception types that also get a checkpoint (dataset failures).
    """

    def __init__(
        self, dirpath: str | Path, stop: StopRequest, keep_on: tuple[type[BaseException], ...] = ()
    ) -> None:
        self.dirpath = Path(dirpath)
        self.stop = stop
        self.keep_on = keep_on
        self.saved: str | None = None
        self.saved_step: int | None = None
        self._before_val: dict[str, Any] | None = None

    def _save(
        self, trainer: pl.Trainer, collective: bool, checkpoint: dict[str, Any] | None = None
    ) -> str:
        """Write ``checkpoint`` (default: the current state) from rank 0.

        ``collective`` adds a barrier: every rank must then call this at the same point.
        """
        path = self.dirpath / LAST_NAME
        if trainer.is_global_zero:
            if checkpoint is None:
                checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
            trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, path)
        if collective:
            trainer.strategy.barrier("vanseg.emergency_checkpoint")
        for cb in trainer.checkpoint_callbacks:  # so results.json and later saves name it
            if getattr(cb, "save_last", False):
                cb.last_model_path = str(path)
        step = int(checkpoint["global_step"]) if checkpoint else trainer.global_step
        self.saved, self.saved_step = str(path), step
        log.warning("saved a resumable checkpoint of step %d: %s", step, path)
        return str(path)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        requested = self.stop.signum is not None
        if not trainer.strategy.reduce_boolean_decision(requested, all=False):
            return
        signum = self.stop.signum or signal.SIGTERM  # another rank received it
        path = self._save(trainer, collective=True)
        if signum == signal.SIGUSR1 and os.environ.get("SLURM_JOB_ID") and trainer.is_global_zero:
            _slurm_requeue()
        raise TrainingInterrupted(signum, trainer.global_step, path)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The state after this step's update: validation changes no weights, so these tensor
        # references stay valid until training resumes.
        self._before_val = None
        if not trainer.sanity_checking and trainer.is_global_zero:
            self._before_val = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._before_val = None

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or self.stop.signum is None:
            return
        # this validation is abandoned; resuming the checkpoint of this step repeats it
        path = self._save(trainer, collective=False, checkpoint=self._before_val)
        raise TrainingInterrupted(self.stop.signum, self.saved_step or trainer.global_step, path)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self.saved is not None or trainer.sanity_checking:
            return
        if isinstance(exception, SIGTERMException):  # Lightning's own SIGTERM stop
            if self.stop.signum is None:
                self.stop.signum = signal.SIGTERM
        elif not isinstance(exception, self.keep_on):
            return
        snapshot = self._before_val if trainer.validating else None
        self._save(trainer, collective=False, checkpoint=snapshot)
