"""Evaluate a checkpoint on a validation split with a stated protocol: what ``eval.py`` runs.

The model and its `ModelMeta` come from `load_checkpoint` (the file is read once). The data
config is, in this order: the command line's ``data=<choice>`` if given, else the ``data`` node
stored in a training checkpoint (with any ``data.<key>=...`` overrides applied to it), else the
default ``data`` of ``conf/eval.yaml`` (ADE20K). Images and labels are read at their original
resolution; `predict_mask` builds every pass's input as the original does and brings the
probabilities back to the label size (docs/pitfalls.md C1).

Protocol (docs/reference.md §8): by default the original's plain ``tools/test.py`` for the
checkpoint's family (`resolve_inference`): Light-Ham, UperNet, FPN one scale, keep-ratio into
``data.eval_scale`` and resized to a multiple of ``data.test_size_divisor``; HamNet ratios
0.5..1.75 without flip and without ResizeToMultiple. ``tta=ms_flip`` is ``test.py --aug-test``;
``inference.mode=slide`` uses 512 crops with stride 341 (logits averaged over overlaps).

Distributed: launched by ``torchrun`` (``WORLD_SIZE`` > 1), every process evaluates a contiguous,
unrepeated shard (`ShardSampler`) and the confusion matrices are summed (a torchmetrics
reduction), so N processes give exactly the numbers of one. Printing and files: rank 0 only
(`vanseg.evaluation.report`).

``report=true`` also scores every image (`vanseg.evaluation.image_report`): each rank keeps its
rows and its own worst-k panels, the rows are gathered to every rank (``all_gather_object``),
and rank 0 writes ``per_image.csv``, keeps the global worst k in ``worst/`` and writes
``report.html``, equal to the files of one process (`vanseg.evaluation.worst`).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from vanseg.checkpoint.file import load_checkpoint, require_file
from vanseg.config.compose import task_overrides
from vanseg.config.trust import apply_trusted_targets, check_data_config
from vanseg.data.sampler import ShardSampler
from vanseg.errors import ConfigError, InputNotFoundError
from vanseg.evaluation.image_report import (
    REPORT_FILES,
    ImageRecorder,
    ReportOptions,
    write_image_report,
)
from vanseg.evaluation.loop import evaluate_dataset
from vanseg.evaluation.report import (
    RESULT_FILES,
    EvalResult,
    check_output,
    print_results,
    summary,
    write_results,
)
from vanseg.inference.assemble import Runner, assemble
from vanseg.inference.visualize import palette_array
from vanseg.utils.distributed import (
    barrier,
    distributed,
    gather_lists,
    rank_and_world_size,
    resolve_device,
    sum_over_ranks,
)

__all__ = [
    "RESULT_FILES",
    "ConfigError",
    "EvalResult",
    "evaluate_dataset",
    "resolve_data_config",
    "run_eval",
]

log = logging.getLogger("vanseg")


# --------------------------------------------------------------------------- data
def _override_key(override: str) -> tuple[str, bool]:
    """``("data.root", False)`` for ``data.root=x``; ``(key, True)`` for ``~key``."""
    delete = override.startswith("~")
    key = override.lstrip("~+").split("=", 1)[0].strip()
    return key, delete


def resolve_data_config(
    cfg: DictConfig, stored: Mapping[str, Any] | None, overrides: Sequence[str]
) -> tuple[dict[str, Any], str]:
    """The data config to evaluate on, and where it came from (for messages and results).

    Args:
        cfg: The composed eval config (its ``data`` node is the command line's or the default).
        stored: The ``data`` node stored in a training checkpoint, if any.
        overrides: The command-line overrides; ``data=<choice>`` selects ``cfg.data`` over
            ``stored``, ``data.<key>=...`` entries are applied to ``stored``.
    """
    keys = [_override_key(o) for o in overrides]
    chosen = any(key == "data" for key, _ in keys)
    if chosen or not stored:
        data = OmegaConf.to_container(cfg.data, resolve=True)
        return data, "command line (data=...)" if chosen else "eval.yaml default"
    data_cfg = OmegaConf.create(copy.deepcopy(dict(stored)))
    for key, delete in keys:
        if not key.startswith("data."):
            continue
        sub = key.removeprefix("data.")
        if delete:
            parent, _, leaf = sub.rpartition(".")
            node = OmegaConf.select(data_cfg, parent) if parent else data_cfg
            if node is not None and leaf in node:
                node.pop(leaf)
        else:
            value = OmegaConf.select(cfg, key)  # as Hydra parsed and applied it
            if OmegaConf.is_config(value):
                value = OmegaConf.to_container(value, resolve=True)
            OmegaConf.update(data_cfg, sub, value, merge=False, force_add=True)
    return OmegaConf.to_container(data_cfg, resolve=True), "checkpoint"


def _dataset(dm: Any, source: str, rank: int) -> Any:
    """The validation split of ``dm`` at original resolution (``dataset.load(i)``)."""
    if rank == 0:
        dm.prepare_files()  # a generated dataset is written once, by one process
    barrier()
    try:
        return dm.dataset(dm.val_split)
    except InputNotFoundError as err:
        hint = (
            "The data config was stored in the checkpoint; point it at your copy with "
            "data.root=... or choose another with data=<ade20k|folder|synthetic>."
            if source == "checkpoint"
            else "Set data.root=... or choose data=<ade20k|folder|synthetic>."
        )
        raise ConfigError(f"{err}\n{hint}") from err


# --------------------------------------------------------------------------- evaluation
def _output_dir(cfg: DictConfig) -> Path:
    if cfg.get("output"):
        return Path(str(cfg.output))
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError as err:  # not under @hydra.main
        raise ConfigError("no output folder: pass output=<folder>") from err


def report_options(cfg: DictConfig) -> ReportOptions | None:
    """`ReportOptions` from ``report_*`` when ``report=true``, else None."""
    enabled = cfg.get("report", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"report={enabled!r} must be true or false")
    if not enabled:
        return None
    return ReportOptions(
        worst_k=cfg.report_worst_k,
        top_pairs=cfg.report_top_pairs,
        class_images=cfg.report_class_images,
        panel_side=cfg.report_panel_side,
    )


@dataclass
class _Setup:
    """Everything an evaluation needs, prepared identically on every rank."""

    runner: Runner
    entry: Mapping[str, Any]
    datamodule: Any
    dataset: Any
    data_cfg: dict[str, Any]
    data_source: str


def _setup(cfg: DictConfig, overrides: Sequence[str], device: torch.device, rank: int) -> _Setup:
    loaded = load_checkpoint(str(cfg.ckpt_path), bool(cfg.unsafe_load))
    stored = (loaded.entry.get("config") or {}).get("data")
    if stored is not None:  # the gate for stored configs, before it is instantiated
        stored = check_data_config(stored, str(cfg.ckpt_path), "vanseg.config.data")
    data_cfg, source = resolve_data_config(cfg, stored, overrides)
    dm = instantiate(data_cfg)  # reads no files yet
    if loaded.meta.num_classes != dm.num_classes:
        raise ConfigError(
            f"the checkpoint predicts {loaded.meta.num_classes} classes but dataset "
            f"'{dm.name}' has {dm.num_classes} (data.num_classes; data config from "
            f"{source}); evaluate it on the data it was trained for (data=...)"
        )
    meta = loaded.meta.with_data(data_cfg)  # classes, normalisation, protocol of this data
    dataset = _dataset(dm, source, rank)
    options = OmegaConf.to_container(cfg.inference, resolve=True)
    runner = assemble(loaded.model, meta, options, cfg.get("tta"), cfg.eval_seed, device)
    return _Setup(runner, loaded.entry, dm, dataset, data_cfg, source)


def run_eval(cfg: DictConfig, overrides: Sequence[str] | None = None) -> EvalResult:
    """Evaluate ``cfg.ckpt_path`` as ``conf/eval.yaml`` describes; print and save on rank 0.

    Args:
        cfg: The composed ``eval`` config.
        overrides: The command-line overrides (default: Hydra's, when run by ``eval.py``);
            they decide whether ``data`` comes from the checkpoint (see the module docstring).

    Raises:
        VansegError: Missing or config-less checkpoint, class-count mismatch, missing dataset,
            existing results without ``overwrite``, invalid inference options (`ConfigError`,
            `CheckpointError`, `OutputExistsError`).
    """
    apply_trusted_targets(cfg)
    overrides = task_overrides() if overrides is None else list(overrides)
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise ConfigError("missing ckpt_path=<checkpoint file>")
    ckpt_path = require_file(str(cfg.ckpt_path))
    output = _output_dir(cfg)
    report = report_options(cfg)
    files = RESULT_FILES + (REPORT_FILES if report is not None else ())
    check_output(output, bool(cfg.overwrite), files)  # on every rank, before any collective
    device = resolve_device(str(cfg.device))
    with distributed(device):
        rank, world_size = rank_and_world_size()
        job = _setup(cfg, overrides, device, rank)
        dm, dataset = job.datamodule, job.dataset
        if rank == 0:
            log.info(
                "evaluating %s on %d %s/%s images with %d process(es): %s",
                *(ckpt_path, len(dataset), dm.name, dm.val_split, world_size),
                job.runner.protocol.describe(),
            )
        start = time.perf_counter()
        shard = ShardSampler(len(dataset), rank, world_size)  # no padding, no repeats
        progress = bool(cfg.progress) and rank == 0
        recorder = None
        if report is not None:
            meta = job.runner.meta
            palette = palette_array(meta.num_classes, meta.palette)
            names = getattr(dataset, "names", None)
            recorder = ImageRecorder(
                output, meta.class_names, palette, dm.ignore_index, names, report
            )
        metric, count = evaluate_dataset(
            job.runner.forward,
            *(dataset, job.runner.protocol, shard, dm.ignore_index, progress, recorder),
        )
        metrics = metric.compute()  # sums the confusion matrices of all ranks
        num_images = sum_over_ranks(count, device)
        scores = gather_lists(recorder.scores) if recorder is not None else []
        seconds = time.perf_counter() - start
    if num_images != len(dataset):  # would mean a sharding bug: never report such numbers
        raise RuntimeError(f"evaluated {num_images} images, but the split has {len(dataset)}")
    result = EvalResult(
        metrics, job.runner.protocol, num_images, list(job.runner.meta.class_names), output
    )
    if rank == 0:
        keys = ("name", "num_classes", "ignore_index", "reduce_zero_label")
        data_info = {key: job.data_cfg.get(key) for key in keys}
        info = {
            "checkpoint": str(ckpt_path.resolve()),
            "eval_seed": job.runner.eval_seed,
            "precision": job.runner.precision,
            "fast": job.runner.fast,
            "world_size": world_size,
            "device": str(device),
            "seconds": round(seconds, 2),
            "data_source": job.data_source,
            "data": {**data_info, "root": str(dm.root), "split": dm.val_split},
            "model": job.entry.get("model"),
            "family": job.runner.meta.family,
            "overrides": overrides,
        }
        print_results(result, info)
        write_results(result, info)
        if report is not None:
            write_image_report(result, scores, info, report)
        numbers = ", ".join(f"{k} {v}" for k, v in summary(result).items())
        log.info(
            "%s (percent) | %s | results in %s", numbers, job.runner.protocol.describe(), output
        )
    return result
