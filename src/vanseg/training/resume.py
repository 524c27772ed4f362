"""Resuming: which checkpoint ``ckpt_path`` names, and whether this run may continue it.

The newest checkpoint can be damaged (a copy cut short, a full disk). Rather than stopping on
it, the newest *intact* one is used and each skipped file is named in a warning
(`vanseg.utils.safe_load.is_intact`: readable zip archive, every CRC correct).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from vanseg.checkpoint.file import read_checkpoint, read_entry, require_file, stored_step
from vanseg.config.trust import MODEL_KEYS
from vanseg.errors import CheckpointError, InputNotFoundError
from vanseg.utils.safe_load import diagnose, is_intact

__all__ = [
    "RESUME_POLICY",
    "check_recipe_changes",
    "checkpoints_newest_first",
    "newest_intact_checkpoint",
    "remove_partial_writes",
    "resolve_ckpt_path",
    "resume_entry",
]

log = logging.getLogger("vanseg")


def checkpoints_newest_first(folders: Iterable[Path]) -> list[Path]:
    """Every ``*.ckpt`` in ``folders``: ``last.ckpt`` files, then others, ``best*`` last (the
    order of preference among files of the same step, :func:`newest_intact_checkpoint`).

    Within each group the newest comes first. ``last.ckpt`` and the periodic ``step_*.ckpt``
    are written right after a training step; ``best*`` files at the end of a validation, a
    different point of the loop, so they are the last resort. ``nonfinite_*`` files (weights
    of a non-finite loss, `vanseg.training.checkpointing.keep_finite_checkpoint`) never count.
    """
    files = [
        p
        for folder in folders
        if folder.is_dir()
        for p in folder.glob("*.ckpt")
        if not p.name.startswith(("nonfinite_", "unreadable_"))
    ]

    def rank(path: Path) -> tuple[bool, bool, float]:
        return path.name == "last.ckpt", not path.name.startswith("best"), path.stat().st_mtime

    return sorted(files, key=rank, reverse=True)


def newest_intact_checkpoint(candidates: Iterable[Path], what: str = "ckpt_path=last") -> Path:
    """The intact checkpoint of ``candidates`` with the highest stored step.

    The step inside the file decides, not its name: after a resume into a moved folder or an
    interrupted save, ``last.ckpt`` can be older than ``step_*.ckpt`` or ``last-v1.ckpt``.
    Among files of the same step the earlier candidate wins (``last.ckpt`` first, ``best*``
    last, see :func:`checkpoints_newest_first`). A warning names each damaged file skipped.

    Raises:
        CheckpointError: Every candidate is damaged (all are listed).
    """
    candidates = list(candidates)
    skipped, found = [], []
    for path in candidates:
        reason = None
        if not is_intact(path):
            damage = diagnose(path) if path.stat().st_size else None
            reason = damage.value if damage is not None else "is empty (0 bytes)"
        else:
            try:
                found.append((stored_step(path), path))
            except (KeyError, TypeError, ValueError):
                found.append((-1, path))  # no step stored: a last resort
            except CheckpointError as err:
                reason = f"cannot be read safely ({err})"
        if reason is not None:
            log.warning("%s: skipping %s, which %s", what, path, reason)
            skipped.append(f"{path} {reason}")
    if not found:
        raise CheckpointError(
            f"{what}: no intact checkpoint; damaged: " + "; ".join(skipped)
            if skipped
            else f"{what}: no checkpoint found"
        )
    order = {path: i for i, path in enumerate(candidates)}
    step, chosen = max(found, key=lambda sp: (sp[0], -order[sp[1]]))
    if skipped or chosen != candidates[0]:
        log.warning("%s: resuming from %s (step %d), the newest intact one", what, chosen, step)
    return chosen


def remove_partial_writes(folder: Path) -> list[Path]:
    """Delete the temporary files of checkpoint saves that never finished (a killed process).

    Checkpoints are written as ``.<name>.<random>.tmp`` and renamed into place
    (`vanseg.training.signals.AtomicCheckpointIO`); a leftover one is never a checkpoint.
    """
    removed = sorted(folder.glob(".*.ckpt.*.tmp")) + sorted(folder.glob(".last.ckpt.tmp"))
    for path in removed:
        log.warning("removing %s, a checkpoint save that never finished", path)
        path.unlink(missing_ok=True)
    return removed


#: What a changed option means on resume (the checkpoint's run config against this run's).
#: ``applied``: takes effect from the resumed step; ``refused``: stops with the difference;
#: ``warned``: runs, with a warning of what it changes (or that the checkpoint's value stays).
_GLOBAL_BATCH = ("warned", "the global batch, so the schedule's meaning")
_TRAINING_DATA = ("warned", "the training data: a different dataset from here on")
RESUME_POLICY: dict[str, tuple[str, str]] = {
    "optimizer.lr": ("applied", "the schedule continues with the new base lr"),
    "trainer.max_steps": ("applied", "the poly schedule is recomputed for the new length"),
    "scheduler": ("applied", "the schedule is rebuilt from the new settings"),
    "data.num_classes": ("refused", "the classes of the checkpoint's metrics and head"),
    "data.ignore_index": ("refused", "which pixels the loss and metrics ignore"),
    "optimizer": ("warned", "the checkpoint's value stays (restored with the optimizer state)"),
    "data.batch_size_per_gpu": _GLOBAL_BATCH,
    "trainer.devices": _GLOBAL_BATCH,
    "trainer.num_nodes": _GLOBAL_BATCH,
    "trainer.accumulate_grad_batches": _GLOBAL_BATCH,
    "data.name": _TRAINING_DATA,
    "data.root": _TRAINING_DATA,
}


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): node}


def _policy(key: str) -> tuple[str, str] | None:
    if key in RESUME_POLICY:
        return RESUME_POLICY[key]
    group = key.split(".", 1)[0]
    return RESUME_POLICY.get(group) if group in ("optimizer", "scheduler") else None


def check_recipe_changes(stored: Mapping[str, Any], current: Mapping[str, Any], path: str) -> None:
    """Compare the checkpoint's run config with this run's, option by option.

    Refused changes raise one error listing them; applied and warned ones are logged (one
    line each). Options not in :data:`RESUME_POLICY` (seeds, logging, paths) do not matter.

    Raises:
        CheckpointError: A refused option differs.
    """
    old, new = _flat(stored), _flat(current)
    refused = []
    for key in sorted(set(old) | set(new)):
        rule = _policy(key)
        if rule is None or old.get(key) == new.get(key) or key.endswith("_target_"):
            continue
        kind, meaning = rule
        change = f"{key}: {old.get(key)!r} in the checkpoint, {new.get(key)!r} now"
        if kind == "refused":
            refused.append(f"{change} ({meaning})")
        elif kind == "applied":
            log.info("resume: %s; applied: %s", change, meaning)
        else:
            log.warning("resume: %s; this changes %s", change, meaning)
    if refused:
        raise CheckpointError(
            f"ckpt_path={path} was trained with other settings that cannot change on resume: "
            + "; ".join(refused)
            + ". Start a new run from its weights instead, or resume with the old values"
        )


def resolve_ckpt_path(
    ckpt_path: str | None, output_dir: str | Path, runs_dir: str | Path
) -> str | None:
    """``last`` -> the newest intact checkpoint of this run folder, else of the same task.

    Args:
        ckpt_path: The ``ckpt_path`` option: ``None``, a file, or ``last``.
        output_dir: This run's folder (``paths.output_dir``).
        runs_dir: The folder of the task's earlier runs (``<log_dir>/<task_name>/runs``).
    """
    if ckpt_path in (None, ""):
        return None
    if ckpt_path != "last":
        return str(require_file(ckpt_path))
    here = Path(output_dir) / "checkpoints"
    runs = Path(runs_dir)
    candidates = checkpoints_newest_first([here])
    if not candidates:  # a new run folder: the newest checkpoints of earlier runs of this task
        candidates = checkpoints_newest_first(sorted(runs.glob("*/checkpoints")))
    if not candidates:
        raise InputNotFoundError(f"ckpt_path=last: no checkpoint in {here} or under {runs}")
    return str(newest_intact_checkpoint(candidates))


def _essentials(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: model_cfg.get(k) for k in ("neck", "head", "aux_head")}
    backbone = model_cfg.get("backbone") or {}
    out["backbone"] = {k: v for k, v in backbone.items() if k != "pretrained"}
    return out


def resume_entry(
    path: str, model_cfg: Mapping[str, Any], run_config: Mapping[str, Any]
) -> tuple[dict[str, Any], int]:
    """The vanseg entry and step of the checkpoint to resume, read once, after the checks.

    The stored model config must equal the one being trained (``backbone.pretrained`` aside);
    other changed options are applied, refused or warned about (:func:`check_recipe_changes`).

    Args:
        path: The checkpoint.
        model_cfg: The model config of this run.
        run_config: This run's resolved config (plain containers).

    Raises:
        CheckpointError: Not a vanseg checkpoint, or one of a different model.
        ConfigError: A changed option that a resume cannot honour.
    """
    ckpt = read_checkpoint(path, mmap=True)
    entry = read_entry(ckpt, path)  # the model config through the gate (vanseg.config.trust)
    stored, current = _essentials(entry["model"]), _essentials(model_cfg)
    if stored != current:
        diff = [k for k in MODEL_KEYS if stored[k] != current[k]]
        raise CheckpointError(
            f"ckpt_path={path} holds a different model: {', '.join(diff)} differ.\n"
            f"checkpoint: {json.dumps({k: stored[k] for k in diff})}\n"
            f"this run:   {json.dumps({k: current[k] for k in diff})}"
        )
    if isinstance(entry.get("config"), Mapping):
        check_recipe_changes(entry["config"], run_config, path)
    return entry, int(ckpt.get("global_step", 0))
