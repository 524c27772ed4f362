"""Entry-point tasks: the only code (with tools/) that reads the Hydra DictConfig."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar
from pytorch_lightning.utilities.exceptions import SIGTERMException

from vanseg.checkpoint.init_from import init_model_from
from vanseg.config.checks import (
    check_train_config,
    refuse_multirun_ddp,
    resolve_sync_batchnorm,
)
from vanseg.config.compose import model_config, task_overrides
from vanseg.config.hydra_callbacks import RESULT_FILE
from vanseg.config.trust import apply_trusted_targets
from vanseg.errors import DatasetError
from vanseg.models.build import build_model_from_config
from vanseg.training.checkpointing import keep_finite_checkpoint
from vanseg.training.log_setup import configure_run_logging, stdout_is_terminal
from vanseg.training.loggers import build_loggers
from vanseg.training.module import NonFiniteLossError, SegmentationModule
from vanseg.training.resume import remove_partial_writes, resolve_ckpt_path, resume_entry
from vanseg.training.run_dir import check_run_folder, write_results
from vanseg.training.signals import (
    AtomicCheckpointIO,
    CheckpointWriteError,
    EmergencyCheckpoint,
    StopRequest,
    TrainingInterrupted,
    TrainingStopped,
)
from vanseg.utils.distributed import launcher_is_rank_zero

__all__ = ["TrainingDataError", "train"]

log = logging.getLogger("vanseg")


class TrainingDataError(TrainingStopped, DatasetError):
    """A dataset file failed while training or validating; a checkpoint of the step was saved."""

    exit_code = 2


def _check_output_dir(cfg: DictConfig, ckpt_path: str | None) -> None:
    """``paths.output_dir`` set apart from the run folder must not hold another run either.

    (`RunDirGuard` checks ``hydra.run.dir`` before Hydra writes there; the run folder itself
    is therefore not checked again.)
    """
    from hydra.core.hydra_config import HydraConfig

    out = Path(cfg.paths.output_dir)
    if (
        HydraConfig.initialized()
        and out.resolve() == Path(HydraConfig.get().runtime.output_dir).resolve()
    ):
        return
    if launcher_is_rank_zero():
        check_run_folder(out, ckpt_path, "paths.output_dir")


def _instantiate_all(node: DictConfig | None) -> list[Any]:
    if not node:
        return []
    return [instantiate(c) for c in node.values() if c is not None and "_target_" in c]


def _multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # not under @hydra.main
        return False


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train (and validate) the configured model; returns the final metrics."""
    check_train_config(cfg)  # types, ranges and devices, before any data or model work
    apply_trusted_targets(cfg)  # the user's own extra model targets (vanseg.config.trust)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    bar_on_terminal = stdout_is_terminal() and any(isinstance(c, ProgressBar) for c in callbacks)
    if not bar_on_terminal:  # in a file the text log replaces the bar
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    configure_run_logging(bar_on_terminal)
    refuse_multirun_ddp(cfg.trainer, _multirun())
    trainer_overrides = {"sync_batchnorm": resolve_sync_batchnorm(cfg.trainer)}
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    if launcher_is_rank_zero():
        datamodule.prepare_data()  # data errors come before any model is built

    mcfg = model_config(cfg)
    runs = Path(cfg.paths.log_dir) / cfg.task_name / "runs"
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.output_dir, runs)
    _check_output_dir(cfg, ckpt_path)
    own_checkpoints = _checkpoint_dir(cfg, callbacks)
    if own_checkpoints.is_dir() and launcher_is_rank_zero():
        remove_partial_writes(own_checkpoints)  # saves a killed run never finished
    run_config = OmegaConf.to_container(cfg, resolve=True)
    meta: dict[str, Any] = {}
    if ckpt_path:
        meta, step = resume_entry(ckpt_path, mcfg, run_config)
        run = Path(ckpt_path).resolve().parent.parent
        log.info("resuming from step %s of run %s: %s", step, run, ckpt_path)
        mcfg["backbone"]["pretrained"] = None  # the resumed weights replace the ImageNet ones
    init_from = OmegaConf.select(cfg, "model.init_from")  # a new run from other weights
    if init_from:
        mcfg["backbone"]["pretrained"] = None  # the init_from weights replace the ImageNet ones
    model = build_model_from_config(mcfg)
    if init_from:
        init_model_from(model, init_from)
        run_config["init_from"] = init_from
    run_config["model"] = mcfg
    module = SegmentationModule(
        model,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler),
        num_classes=cfg.data.num_classes,
        ignore_index=cfg.data.ignore_index,
        class_names=list(datamodule.class_names),
        seed=cfg.seed,
        run_config=run_config,
        **cfg.module,
    )
    loggers = build_loggers(cfg.get("logger"), meta.get("wandb_run_id"))
    for logger in loggers:  # the resolved config, once (loggers write on rank 0 only)
        logger.log_hyperparams(run_config)
    for logger in loggers:
        if hasattr(logger, "experiment") and type(logger).__name__ == "WandbLogger":
            module.wandb_run_id = logger.version
    stop = StopRequest()
    emergency = EmergencyCheckpoint(_checkpoint_dir(cfg, callbacks), stop, keep_on=(DatasetError,))
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=[*callbacks, emergency],
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=bar_on_terminal,
        **trainer_overrides,
    )
    stop.install()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except NonFiniteLossError as err:
        kept = (  # rank 0 owns the checkpoint folder
            keep_finite_checkpoint(emergency.dirpath, module.global_step)
            if trainer.is_global_zero
            else _last_checkpoint(trainer)
        )
        raise NonFiniteLossError(f"{err} Last checkpoint: {kept or 'none written yet'}") from err
    except (TrainingInterrupted, SIGTERMException) as err:
        if not isinstance(err, TrainingInterrupted):  # Lightning's stop (SIGTERM in validation)
            err = TrainingInterrupted(signal.SIGTERM, emergency.saved_step or 0, emergency.saved)
        _finish(cfg, trainer, module, {"stopped": str(err)})
        raise err from None
    except CheckpointWriteError as err:
        log.error("%s", err)  # also into train.log, if the disk still takes it
        try:
            _finish(cfg, trainer, module, {"stopped": str(err)})
        except OSError as again:
            log.error("results.json not written either: %s", again)
        raise
    except DatasetError as err:
        step, saved = emergency.saved_step, emergency.saved
        _finish(cfg, trainer, module, {"stopped": str(err)})
        raise TrainingDataError(
            f"{err} Training stopped at step {step}; checkpoint: {saved or 'none saved'}. Fix or "
            f"remove the file, then resume with ckpt_path={saved or 'last'}"
        ) from err
    finally:
        stop.restore()
    _complete_last_step(trainer, module, datamodule)
    return _finish(cfg, trainer, module)


def _complete_last_step(trainer: pl.Trainer, module: SegmentationModule, datamodule: Any) -> None:
    """Save and validate the final step when ``max_steps`` is not on the checkpoint interval.

    Lightning checkpoints and validates every ``val_check_interval`` steps only, so the steps
    after the last multiple were neither saved nor validated. Here the periodic checkpoint and
    ``last.ckpt`` of the final step are written first (the state a resume continues from),
    then the final step is validated and the best checkpoint updated if it is better.
    """
    step = trainer.global_step
    if step == 0:
        return
    callbacks = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
    for cb in callbacks:
        if not cb.monitor and cb._last_global_step_saved != step:
            candidates = cb._monitor_candidates(trainer)
            cb._save_none_monitor_checkpoint(trainer, candidates)
            cb._save_last_checkpoint(trainer, candidates)
    if module.validated_step == step:
        return
    log.info("validating the final step %d (not on the validation interval)", step)
    trainer.validate(module, datamodule=datamodule, verbose=False)
    for cb in callbacks:
        if cb.monitor and cb._last_global_step_saved != step:
            cb._save_topk_checkpoint(trainer, cb._monitor_candidates(trainer))


def _finish(
    cfg: DictConfig, trainer: pl.Trainer, module: SegmentationModule, extra: dict | None = None
) -> dict[str, Any]:
    """The run's results (final validation metrics, checkpoints), written to results.json."""
    metrics = {
        k: float(v)
        for k, v in trainer.callback_metrics.items()
        if k.startswith("val/") and k.count("/") == 1
    }
    result = {
        "metrics": metrics,
        "checkpoint": _last_checkpoint(trainer),
        "best_checkpoint": _best_checkpoint(trainer),
        "steps": trainer.global_step,
        "overrides": task_overrides(),
        **(extra or {}),
    }
    if trainer.is_global_zero:
        _write_summary(cfg, module, result)
    return result


def _checkpoint_dir(cfg: DictConfig, callbacks: list[Any]) -> Path:
    """Where the run's ``last.ckpt`` goes: the folder of the ``save_last`` checkpoint callback."""
    for cb in callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.save_last and cb.dirpath:
            return Path(cb.dirpath)
    return Path(cfg.paths.output_dir) / "checkpoints"


def _last_checkpoint(trainer: pl.Trainer) -> str | None:
    for cb in trainer.checkpoint_callbacks:
        if getattr(cb, "last_model_path", ""):
            return cb.last_model_path
    return None


def _best_checkpoint(trainer: pl.Trainer) -> str | None:
    for cb in trainer.checkpoint_callbacks:
        if cb.monitor and cb.best_model_path:
            return cb.best_model_path
    return None


def _print_final_table(module: SegmentationModule, result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    at = module.validated_step
    title = f"Final validation ({result['steps']} steps)"
    if at != result["steps"]:
        title = f"Last validation: step {at} of {result['steps']}"
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result["metrics"].items():
        table.add_row(key, f"{value:.4f}")
    per_class = module.last_val_results.get("IoU")
    if per_class is not None:
        for name, iou in zip(module.class_names, per_class.tolist(), strict=True):
            table.add_row(f"  IoU {name}", "nan" if iou != iou else f"{iou:.4f}")
    if result.get("stopped"):
        table.caption = "stopped early"
    console.print(table)


def _write_summary(cfg: DictConfig, module: SegmentationModule, result: dict[str, Any]) -> None:
    out = Path(cfg.paths.output_dir)
    write_results(out / RESULT_FILE, result)
    if result["metrics"]:
        _print_final_table(module, result)
    else:
        log.info("No validation ran before the end (%d steps): no metrics.", result["steps"])
    ckpt = result["best_checkpoint"] or result["checkpoint"]
    if ckpt:
        log.info("Checkpoint: %s", ckpt)  # a log line: never wrapped, also in train.log
        log.info("Evaluate it: python eval.py ckpt_path=%s", ckpt)
