"""Finding the checkpoint that ``ckpt_path=last`` resumes from.

The newest checkpoint can be damaged (a copy cut short, a full disk). Rather than stopping on
it, the newest *intact* one is used and each skipped file is named in a warning
(`vanseg.models.ckpt_check.is_intact`: readable zip archive, every CRC correct).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from vanseg.models.ckpt_check import diagnose, is_intact
from vanseg.models.pretrained import CheckpointError

__all__ = ["checkpoints_newest_first", "newest_intact_checkpoint"]

log = logging.getLogger("vanseg")


def checkpoints_newest_first(folders: Iterable[Path]) -> list[Path]:
    """Every ``*.ckpt`` in ``folders``: ``last.ckpt`` files, then others, ``best*`` last.

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
        if not p.name.startswith("nonfinite_")
    ]

    def rank(path: Path) -> tuple[bool, bool, float]:
        return path.name == "last.ckpt", not path.name.startswith("best"), path.stat().st_mtime

    return sorted(files, key=rank, reverse=True)


def newest_intact_checkpoint(candidates: Iterable[Path], what: str = "ckpt_path=last") -> Path:
    """The first intact file of ``candidates``; a warning names each damaged one skipped.

    Raises:
        CheckpointError: Every candidate is damaged (all are listed).
    """
    skipped = []
    for path in candidates:
        if is_intact(path):
            if skipped:
                log.warning("%s: resuming from %s, the newest intact checkpoint", what, path)
            return path
        damage = diagnose(path) if path.stat().st_size else None
        reason = damage.value if damage is not None else "is empty (0 bytes)"
        log.warning("%s: skipping %s, which %s", what, path, reason)
        skipped.append(f"{path} {reason}")
    raise CheckpointError(
        f"{what}: no intact checkpoint; damaged: " + "; ".join(skipped)
        if skipped
        else f"{what}: no checkpoint found"
    )
