"""Checks of a composed training config, run right after composition (before data or models).

Types and ranges that would otherwise fail late (``trainer.max_steps=abc`` after data
preparation and model building, as a long traceback) or silently (a batch size of 0, CPU
processes started for ``trainer.devices=8`` on a machine without GPUs) are reported together,
one line each, as a `vanseg.errors.ConfigError`. Called by entry points only: it reads the
Hydra config.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vanseg.errors import ConfigError

__all__ = [
    "check_devices_exist",
    "check_train_config",
    "refuse_multirun_ddp",
    "resolve_sync_batchnorm",
]

_MISSING = object()
#: ``trainer.precision`` values Lightning 2 accepts.
PRECISIONS = ("32", "32-true", "64", "64-true", "16", "16-mixed", "16-true", "bf16",
              "bf16-mixed", "bf16-true", "transformer-engine")  # fmt: skip


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _pair(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(check(x) for x in v)


#: key -> (test, what the value must be). Absent keys are not checked.
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (_int, "an integer"),
    "trainer.max_steps": (lambda v: _int(v) and (v > 0 or v == -1), "a positive integer (or -1)"),
    "trainer.val_check_interval": (
        lambda v: v is None or (_int(v) and v > 0) or (isinstance(v, float) and 0 < v <= 1),
        "a positive number of steps (or a fraction in (0, 1])",
    ),
    "trainer.log_every_n_steps": (lambda v: _int(v) and v > 0, "a positive integer"),
    "trainer.accumulate_grad_batches": (lambda v: _int(v) and v > 0, "a positive integer"),
    "trainer.num_nodes": (lambda v: _int(v) and v > 0, "a positive integer"),
    "trainer.devices": (
        lambda v: v == "auto" or (_int(v) and (v > 0 or v == -1)) or isinstance(v, (list, str)),
        "a positive integer, -1, auto or a list of device ids",
    ),
    "data.num_classes": (lambda v: _int(v) and 0 < v <= 255, "an integer in 1..255"),
    "data.batch_size_per_gpu": (lambda v: _int(v) and v > 0, "a positive integer"),
    "data.val_batch_size": (lambda v: _int(v) and v > 0, "a positive integer"),
    "data.num_workers": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "data.crop_size": (_pair(lambda x: _int(x) and x > 0), "two positive integers [H, W]"),
    "data.scale": (_pair(lambda x: _int(x) and x > 0), "two positive integers [long, short]"),
    "data.ratio_range": (
        lambda v: _pair(lambda x: _number(x) and x > 0)(v) and v[0] <= v[1],
        "two positive numbers [low, high] with low <= high",
    ),
    "data.verify": (lambda v: v in ("headers", "full", "off"), "one of headers|full|off"),
    "data.eval_scale": (_pair(lambda x: _int(x) and x > 0), "two positive integers [long, short]"),
    "data.ignore_index": (lambda v: _int(v) and 0 <= v <= 255, "an integer in 0..255"),
    "data.class_names": (
        lambda v: (
            v is None
            or isinstance(v, str)
            or (isinstance(v, list) and all(isinstance(x, str) for x in v))
        ),
        "null, a name set such as ade20k, or a list of names",
    ),  # fmt: skip
    "optimizer.lr": (lambda v: _number(v) and v > 0, "a positive number"),
    "optimizer.weight_decay": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "scheduler.warmup_steps": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "scheduler.power": (lambda v: _number(v) and v > 0, "a positive number"),
    "module.aux_weight": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "model.init_from": (
        lambda v: v is None or (isinstance(v, str) and v != ""),
        "null or a checkpoint, export folder, Hub id owner/name or weights name",
    ),
    "module.class_weight": (
        lambda v: v is None or (isinstance(v, list) and all(_number(x) and x >= 0 for x in v)),
        "null or a list of numbers >= 0, one per class",
    ),
    "trainer.precision": (
        lambda v: str(v) in PRECISIONS,
        "one of " + "|".join(PRECISIONS),
    ),
}


def _cross_checks(cfg: DictConfig) -> list[str]:
    """Problems of several values together (run after each value passed its own rule)."""
    problems = []
    classes, ignore = _value(cfg, "data.num_classes"), _value(cfg, "data.ignore_index")
    if _int(classes) and _int(ignore) and ignore < classes:
        problems.append(
            f"data.ignore_index={ignore} is a class index (data.num_classes={classes}); use a "
            "value >= num_classes, such as 255"
        )
    per_class = (("module.class_weight", "values", "weight"), ("data.class_names", "names", "name"))
    for key, plural, unit in per_class:
        values = _value(cfg, key)  # one per class
        if isinstance(values, list) and _int(classes) and len(values) != classes:
            problems.append(
                f"{key} has {len(values)} {plural} but data.num_classes={classes}; give one "
                f"{unit} per class"
            )
    init, resume = _value(cfg, "model.init_from"), _value(cfg, "ckpt_path")
    if init not in (None, _MISSING) and resume not in (None, _MISSING):
        problems.append(
            f"ckpt_path={resume} resumes a run and model.init_from={init} starts a new one "
            "from other weights; give one of them (to resume a fine-tuning run, add "
            "model.init_from=null)"
        )
    return problems


def _value(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=True)
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def check_devices_exist(trainer: DictConfig | dict, gpus: int | None = None) -> None:
    """Refuse device counts the machine cannot meet, instead of starting CPU processes.

    ``accelerator: auto`` with ``devices: N > 1`` and no GPU would start N CPU processes; that
    is available on purpose as ``trainer=ddp_cpu``.
    """
    gpus = torch.cuda.device_count() if gpus is None else gpus
    accelerator, devices = str(trainer.get("accelerator", "auto")), trainer.get("devices", 1)
    if accelerator in ("gpu", "cuda") and gpus == 0 and not (_int(devices) and devices > 1):
        raise ConfigError(
            f"trainer.accelerator={accelerator} but this machine has no GPU; train on the CPU "
            "with trainer=cpu (or trainer=ddp_cpu trainer.devices=N for N CPU processes)"
        )
    if not _int(devices) or devices <= 1 and devices != -1:
        return
    wants_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and devices > 1)
    if wants_gpu and gpus < max(devices, 1):
        raise ConfigError(
            f"trainer.devices={devices} asks for {'all' if devices == -1 else devices} GPUs but "
            f"this machine has {gpus}. Use trainer.devices<={max(gpus, 1)}, or trainer=ddp_cpu "
            f"trainer.devices={abs(devices)} to train with CPU processes on purpose."
        )


def _many_devices(trainer: DictConfig | Mapping[str, Any]) -> bool:
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    return devices == -1 or (_int(devices) and devices > 1) or nodes > 1


def _on_gpu(trainer: DictConfig | Mapping[str, Any], gpus: int) -> bool:
    accelerator = str(trainer.get("accelerator", "auto"))
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpus > 0)


def resolve_sync_batchnorm(
    trainer: DictConfig | Mapping[str, Any], gpus: int | None = None
) -> bool:
    """``trainer.sync_batchnorm``, with ``auto`` meaning: on when several GPUs train.

    Raises:
        ConfigError: ``true`` without GPUs (SyncBatchNorm cannot train on the CPU).
    """
    gpus = torch.cuda.device_count() if gpus is None else gpus
    sync = trainer.get("sync_batchnorm", "auto")
    if sync == "auto":
        return bool(_on_gpu(trainer, gpus) and _many_devices(trainer))
    if sync and not _on_gpu(trainer, gpus):
        raise ConfigError(
            "trainer.sync_batchnorm=true needs GPUs: SyncBatchNorm cannot train "
            "on CPU (docs/pitfalls.md H1). Set trainer.sync_batchnorm=false."
        )
    return bool(sync)


def refuse_multirun_ddp(
    trainer: DictConfig | Mapping[str, Any],
    multirun: bool,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Hydra multirun + in-process DDP relaunches the sweep in every rank (docs/pitfalls.md F2)."""
    environ = os.environ if environ is None else environ
    if multirun and _many_devices(trainer) and not environ.get("LOCAL_RANK"):
        raise ConfigError(
            "Hydra multirun (-m) cannot be combined with in-process multi-device DDP "
            f"(trainer.devices={trainer.get('devices')}): each relaunched rank would run the "
            "whole sweep. Run the jobs one after another without -m, launch each run with "
            "torchrun/srun, or use a launcher plugin that gives each job its own processes "
            "(README: Sweeps)."
        )


def check_train_config(cfg: DictConfig, gpus: int | None = None) -> None:
    """Check the values `vanseg.tasks.train.train` relies on; all problems in one `ConfigError`."""
    problems = []
    for key, (test, must) in _RULES.items():
        try:
            value = _value(cfg, key)
        except OmegaConfBaseException as err:
            problems.append(f"{key}: {str(err).splitlines()[0]}")
            continue
        if value is not _MISSING and not test(value):
            problems.append(f"{key}={value!r} must be {must}")
    if not problems:
        problems = _cross_checks(cfg)
    if problems:
        raise ConfigError(
            "invalid option value(s): "
            + "; ".join(problems)
            + ". Fix them on the command line (key=value) or in the config file."
        )
    if cfg.get("trainer") is not None:
        check_devices_exist(cfg.trainer, gpus)
