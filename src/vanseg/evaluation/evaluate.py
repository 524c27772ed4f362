"""Evaluate a checkpoint on a validation split with a stated protocol: what ``eval.py`` runs.

The model is rebuilt from the config stored in the checkpoint (`vanseg.load_model`). The data
config is, in this order: the command line's ``data=<choice>`` if given, else the ``data`` node
stored in a training checkpoint (with any ``data.<key>=...`` overrides applied to it), else the
default ``data`` of ``conf/eval.yaml`` (ADE20K). Images and labels are read at their original
resolution; the inference functions (`vanseg.evaluation.inference`) resize the image and bring
the probabilities back to the label size (PITFALLS.md C1).

Protocols (REFERENCE.md §8): whole image, keep-ratio into ``data.eval_scale`` and resized to a
multiple of ``data.test_size_divisor`` (32 for the ``ade20k.py`` test pipeline, none for
HamNet's); ``tta=ms_flip`` (ratios 0.5..1.75 x flip, probabilities averaged);
``inference.mode=slide`` (512 crops, stride 341, logits averaged over overlaps).

Distributed: launched by ``torchrun`` (``WORLD_SIZE`` > 1), every process evaluates a contiguous,
unrepeated shard (`ShardSampler`) and the confusion matrices are summed (a torchmetrics
reduction), so N processes give exactly the numbers of one. Printing and files: rank 0 only.

Outputs in the output folder: ``metrics.json`` (summary, per-class, protocol, checkpoint, image
count), ``per_class.csv``, ``confusion.npy`` (int64, rows = label, columns = prediction) and
``confusion.png``.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import track
from rich.table import Table
from torch import nn

from vanseg.api import CKPT_KEY, load_model
from vanseg.data.ade20k import DatasetNotFoundError
from vanseg.data.sampler import ShardSampler
from vanseg.evaluation.confusion_plot import save_confusion_png
from vanseg.evaluation.inference import (
    InferenceProtocol,
    predict_mask,
    resolve_protocol,
    set_eval_seed,
)
from vanseg.evaluation.metrics import SegmentationMetrics, round_results
from vanseg.models.pretrained import load_file
from vanseg.optimize import OptimizeError, for_inference

__all__ = [
    "RESULT_FILES",
    "EvalError",
    "EvalResult",
    "build_protocol",
    "check_output",
    "evaluate_dataset",
    "load_checkpoint",
    "per_class_rows",
    "print_results",
    "resolve_data_config",
    "run_eval",
    "summary",
    "worker_rank_overrides",
    "write_results",
]

log = logging.getLogger("vanseg")

#: Files an evaluation writes; an output folder holding any of them is not overwritten silently.
RESULT_FILES = ("metrics.json", "per_class.csv", "confusion.npy", "confusion.png")
#: ``inference.base_scale`` / ``inference.size_divisor`` value meaning "take it from the data".
FROM_DATA = "data"


class EvalError(RuntimeError):
    """A checkpoint, dataset or option that evaluation cannot use; the message says what to do."""


@dataclass
class EvalResult:
    """What an evaluation produced (the same on every rank).

    ``metrics`` holds the unrounded fractions of `metrics_from_confusion` (``mIoU``, ``mAcc``,
    ``aAcc``, per-class ``IoU``/``Acc`` tensors and ``confmat``).
    """

    metrics: dict[str, Any]
    protocol: InferenceProtocol
    num_images: int
    class_names: list[str]
    output: Path | None


# --------------------------------------------------------------------------- checkpoint
def load_checkpoint(path: str | Path, unsafe_load: bool = False) -> tuple[nn.Module, dict]:
    """The model (eval mode, CPU) and the ``vanseg`` metadata of a vanseg checkpoint.

    Raises:
        EvalError: The file is missing, or it stores no model config (an unconverted original
            checkpoint or a plain state dict).
    """
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"checkpoint not found: ckpt_path={path} (no such file)")
    ckpt = load_file(path, unsafe_load, "unsafe_load")
    meta = ckpt.get(CKPT_KEY) if isinstance(ckpt, Mapping) else None
    if not isinstance(meta, Mapping) or not meta.get("model"):
        state = ckpt.get("state_dict") if isinstance(ckpt, Mapping) else None
        weight = state.get("decode_head.conv_seg.weight") if isinstance(state, Mapping) else None
        classes = f" data.num_classes={weight.shape[0]}" if torch.is_tensor(weight) else ""
        raise EvalError(
            f"{path} stores no vanseg model config (no '{CKPT_KEY}' entry), so the model cannot "
            "be rebuilt from it. If it is an original VAN-Segmentation (mmseg) checkpoint, "
            "convert it once, naming the backbone and head it was trained with:\n"
            f"  python -m vanseg.tools.convert {path} converted.ckpt backbone=<van_tiny|van_small"
            f"|van_base|van_large> head=<light_ham|light_ham_d256|hamnet|upernet|fpn>{classes}\n"
            "then run eval.py ckpt_path=converted.ckpt. Checkpoints written by train.py or "
            "vanseg.save_model carry the config already."
        )
    return load_model(path, unsafe_load=unsafe_load), dict(meta)


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
    _barrier()
    try:
        return dm.dataset(dm.val_split)
    except DatasetNotFoundError as err:
        hint = (
            "The data config was stored in the checkpoint; point it at your copy with "
            "data.root=... or choose another with data=<ade20k|folder|synthetic>."
            if source == "checkpoint"
            else "Set data.root=... or choose data=<ade20k|folder|synthetic>."
        )
        raise EvalError(f"{err}\n{hint}") from err


# --------------------------------------------------------------------------- protocol
def build_protocol(
    options: Mapping[str, Any], tta: str | None, data_cfg: Mapping[str, Any]
) -> InferenceProtocol:
    """`resolve_protocol` with ``"data"`` placeholders filled from the data config.

    ``base_scale: data`` takes ``data.eval_scale``, ``size_divisor: data`` takes
    ``data.test_size_divisor``, and the normalisation always comes from ``data.mean``/``std``.
    """
    options = dict(options)
    if options.get("base_scale") == FROM_DATA:
        options["base_scale"] = data_cfg.get("eval_scale", (2048, 512))
    if options.get("size_divisor") == FROM_DATA:
        options["size_divisor"] = data_cfg.get("test_size_divisor")
    for key in ("mean", "std"):
        if data_cfg.get(key) is not None:
            options.setdefault(key, data_cfg[key])
    try:
        return resolve_protocol(options, tta)
    except (TypeError, ValueError) as err:
        raise EvalError(f"invalid inference options {options} / tta={tta!r}: {err}") from err


# --------------------------------------------------------------------------- distributed
def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    if _world()[1] > 1:
        dist.barrier()


def _device(name: str) -> torch.device:
    """``auto``: CUDA if available, else CPU; a bare ``cuda`` means this process's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":  # under torchrun, one GPU per process
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(name)


@contextmanager
def distributed(device: torch.device) -> Iterator[None]:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1), if not yet joined.

    gloo on CPU, nccl on CUDA. The group is left again at the end if it was joined here.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    joined = False
    if world_size > 1 and not (dist.is_available() and dist.is_initialized()):
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        joined = True
    try:
        yield
    finally:
        if joined:
            dist.destroy_process_group()


def worker_rank_overrides(environ: Mapping[str, str] | None = None) -> list[str]:
    """Hydra overrides that keep ranks > 0 of a ``torchrun`` launch from creating run folders.

    Every rank runs ``@hydra.main``; without these, each would make its own timestamped run
    folder and log file. Rank 0 keeps the normal run folder (the default output).
    """
    environ = os.environ if environ is None else environ
    if environ.get("RANK", "0") == "0":
        return []
    return ["hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=stdout"]


# --------------------------------------------------------------------------- evaluation
def evaluate_dataset(
    model: nn.Module,
    dataset: Any,
    protocol: InferenceProtocol,
    indices: Iterable[int],
    ignore_index: int = 255,
    progress: bool = False,
) -> tuple[SegmentationMetrics, int]:
    """Update a metric with the given images of ``dataset``; returns it and the image count.

    ``dataset.load(i)`` must give the original RGB uint8 image and its label (class indices or
    ``ignore_index``) at the same size. No synchronisation happens here: ``compute()`` on the
    returned metric sums the confusion matrices of all processes.
    """
    device = next(model.parameters()).device
    metric = SegmentationMetrics(model.num_classes, ignore_index).to(device)
    indices = list(indices)
    count = 0
    for index in track(indices, description="Evaluating", disable=not progress):
        image, label = dataset.load(index)
        mask = predict_mask(model, image, protocol, out_size=label.shape)  # (H, W)
        target = torch.from_numpy(label.astype(np.int64)).to(device)
        metric.update(mask.unsqueeze(0), target.unsqueeze(0))
        count += 1
    return metric, count


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse an output folder that already holds results, unless ``overwrite``."""
    existing = [name for name in RESULT_FILES if (output / name).exists()]
    if existing and not overwrite:
        raise EvalError(
            f"output folder {output} already holds results ({', '.join(existing)}); pass "
            "overwrite=true to replace them, or choose another output=<folder>"
        )


def _output_dir(cfg: DictConfig) -> Path:
    if cfg.get("output"):
        return Path(str(cfg.output))
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError as err:  # not under @hydra.main
        raise EvalError("no output folder: pass output=<folder>") from err


def _task_overrides() -> list[str]:
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


@dataclass
class _Setup:
    """Everything an evaluation needs, prepared identically on every rank."""

    model: nn.Module
    meta: dict[str, Any]
    datamodule: Any
    dataset: Any
    data_cfg: dict[str, Any]
    data_source: str
    protocol: InferenceProtocol


def _setup(cfg: DictConfig, overrides: Sequence[str], device: torch.device, rank: int) -> _Setup:
    model, meta = load_checkpoint(str(cfg.ckpt_path), bool(cfg.unsafe_load))
    stored = (meta.get("config") or {}).get("data")
    data_cfg, source = resolve_data_config(cfg, stored, overrides)
    dm = instantiate(data_cfg)  # reads no files yet
    if model.num_classes != dm.num_classes:
        raise EvalError(
            f"the checkpoint predicts {model.num_classes} classes but dataset "
            f"'{dm.name}' has {dm.num_classes} (data.num_classes; data config from "
            f"{source}); evaluate it on the data it was trained for (data=...)"
        )
    dataset = _dataset(dm, source, rank)
    options = OmegaConf.to_container(cfg.inference, resolve=True)
    precision, fast = options.pop("precision", "fp32"), bool(options.pop("fast", False))
    protocol = build_protocol(options, cfg.get("tta"), data_cfg)
    model = model.to(device)
    if cfg.eval_seed is not None:
        set_eval_seed(model, int(cfg.eval_seed))
    try:
        model = for_inference(model, precision, fast)  # inference.precision / inference.fast
    except OptimizeError as err:
        raise EvalError(str(err)) from err
    return _Setup(model, meta, dm, dataset, data_cfg, source, protocol)


def run_eval(cfg: DictConfig, overrides: Sequence[str] | None = None) -> EvalResult:
    """Evaluate ``cfg.ckpt_path`` as ``conf/eval.yaml`` describes; print and save on rank 0.

    Args:
        cfg: The composed ``eval`` config.
        overrides: The command-line overrides (default: Hydra's, when run by ``eval.py``);
            they decide whether ``data`` comes from the checkpoint (see the module docstring).

    Raises:
        EvalError: Missing or config-less checkpoint, class-count mismatch, missing dataset,
            existing results without ``overwrite``, invalid inference options.
    """
    overrides = _task_overrides() if overrides is None else list(overrides)
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise EvalError("missing ckpt_path=<checkpoint file>")
    ckpt_path = Path(str(cfg.ckpt_path))
    if not ckpt_path.is_file():
        raise EvalError(f"checkpoint not found: ckpt_path={ckpt_path} (no such file)")
    output = _output_dir(cfg)
    check_output(output, bool(cfg.overwrite))  # on every rank, before any collective
    device = _device(str(cfg.device))
    with distributed(device):
        rank, world_size = _world()
        job = _setup(cfg, overrides, device, rank)
        dm, dataset = job.datamodule, job.dataset
        if rank == 0:
            log.info(
                "evaluating %s on %d %s/%s images with %d process(es): %s",
                *(ckpt_path, len(dataset), dm.name, dm.val_split, world_size),
                job.protocol.describe(),
            )
        start = time.perf_counter()
        shard = ShardSampler(len(dataset), rank, world_size)  # no padding, no repeats
        progress = bool(cfg.progress) and rank == 0
        metric, count = evaluate_dataset(
            job.model, dataset, job.protocol, shard, dm.ignore_index, progress
        )
        metrics = metric.compute()  # sums the confusion matrices of all ranks
        num_images = _sum_over_ranks(count, device)
        seconds = time.perf_counter() - start
    if num_images != len(dataset):  # would mean a sharding bug: never report such numbers
        raise RuntimeError(f"evaluated {num_images} images, but the split has {len(dataset)}")
    result = EvalResult(metrics, job.protocol, num_images, list(dm.class_names), output)
    if rank == 0:
        keys = ("name", "num_classes", "ignore_index", "reduce_zero_label")
        data_info = {key: job.data_cfg.get(key) for key in keys}
        info = {
            "checkpoint": str(ckpt_path.resolve()),
            "eval_seed": cfg.eval_seed,
            "precision": cfg.inference.get("precision", "fp32"),
            "fast": bool(cfg.inference.get("fast", False)),
            "world_size": world_size,
            "device": str(device),
            "seconds": round(seconds, 2),
            "data_source": job.data_source,
            "data": {**data_info, "root": str(dm.root), "split": dm.val_split},
            "model": job.meta.get("model"),
            "overrides": overrides,
        }
        print_results(result, info)
        write_results(result, info)
        numbers = ", ".join(f"{k} {v}" for k, v in summary(result).items())
        log.info("%s (percent) | %s | results in %s", numbers, job.protocol.describe(), output)
    return result


def _sum_over_ranks(value: int, device: torch.device) -> int:
    if _world()[1] == 1:
        return value
    total = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(total)
    return int(total.item())


# --------------------------------------------------------------------------- output
def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def per_class_rows(result: EvalResult) -> list[dict[str, Any]]:
    """One row per class: index, name, IoU and Acc in percent (rounded as mmseg), pixel counts."""
    rounded = round_results(result.metrics)
    confmat = result.metrics["confmat"].cpu()
    label_px, pred_px = confmat.sum(dim=1).tolist(), confmat.sum(dim=0).tolist()
    return [
        {
            "index": i,
            "class": name,
            "IoU": _nan_to_none(rounded["IoU"][i]),
            "Acc": _nan_to_none(rounded["Acc"][i]),
            "label_pixels": label_px[i],
            "pred_pixels": pred_px[i],
        }
        for i, name in enumerate(result.class_names)
    ]


def summary(result: EvalResult) -> dict[str, float | None]:
    """``mIoU``, ``mAcc``, ``aAcc`` in percent, rounded to 2 decimals as mmseg prints them."""
    rounded = round_results(result.metrics)
    return {key: _nan_to_none(rounded[key]) for key in ("mIoU", "mAcc", "aAcc")}


def print_results(result: EvalResult, info: Mapping[str, Any]) -> None:
    """The per-class table, the summary and the protocol, with rich."""
    console = Console(soft_wrap=True)  # long lines (protocol, paths) stay whole in logs
    table = Table(title=f"Per-class results ({result.num_images} images)")
    table.add_column("#", justify="right")
    table.add_column("class")
    table.add_column("IoU", justify="right")
    table.add_column("Acc", justify="right")
    for row in per_class_rows(result):
        iou, acc = (f"{v:.2f}" if v is not None else "nan" for v in (row["IoU"], row["Acc"]))
        table.add_row(str(row["index"]), row["class"], iou, acc)
    console.print(table)
    numbers = summary(result)
    shown = "  ".join(f"{k} {'nan' if v is None else f'{v:.2f}'}" for k, v in numbers.items())
    console.print(f"[bold]{shown}[/]  (percent)")
    console.print(f"protocol: {result.protocol.describe()}")
    console.print(
        f"checkpoint: {info['checkpoint']}  |  data: {info['data']['name']} "
        f"{info['data']['split']} ({info['data_source']})  |  eval_seed: {info['eval_seed']}"
    )
    if result.output is not None:
        console.print(f"results: {result.output}")


def write_results(result: EvalResult, info: Mapping[str, Any]) -> Path:
    """Write ``metrics.json``, ``per_class.csv``, ``confusion.npy`` and ``confusion.png``."""
    if result.output is None:
        raise EvalError("no output folder to write the results to")
    out = result.output
    out.mkdir(parents=True, exist_ok=True)
    rows = per_class_rows(result)
    confmat = result.metrics["confmat"].cpu().numpy().astype(np.int64)
    document = {
        "units": "summary and per_class IoU/Acc: percent, rounded to 2 decimals as mmseg "
        "prints them; summary_fractions: unrounded fractions",
        "summary": summary(result),
        "summary_fractions": {
            key: _nan_to_none(float(result.metrics[key])) for key in ("mIoU", "mAcc", "aAcc")
        },
        "num_images": result.num_images,
        "protocol_text": result.protocol.describe(),
        "protocol": result.protocol.to_dict(),
        **info,
        "per_class": rows,
    }
    (out / "metrics.json").write_text(json.dumps(document, indent=2) + "\n")
    with open(out / "per_class.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "nan" if v is None else v for k, v in row.items()})
    np.save(out / "confusion.npy", confmat)
    save_confusion_png(confmat, out / "confusion.png", result.class_names)
    return out
