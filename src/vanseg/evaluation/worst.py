"""The k worst images of an evaluation, with their panels written as the evaluation goes.

Order: lower per-image mIoU is worse; equal mIoU is broken by the dataset index (lower index
first), so the selection never depends on the order images arrive in. Images without labelled
pixels (mIoU NaN) are never ranked.

Memory: a bounded heap of at most k entries per process. When an image enters the heap its
panel is rendered and written to ``worst/<index>_<name>.png``; when a worse image pushes it out,
its file is deleted. Images that never enter the heap are never rendered.

Several processes (``torchrun``): every rank keeps its own heap over its shard and writes its
panels into the same ``worst/`` folder (file names carry the dataset index, so ranks never
write the same file; a shared file system, as on one node, is assumed). Every image among the
global k worst is also among the k worst of its own rank, so its panel exists. After the
per-image rows are gathered, rank 0 computes the global k worst with the same order
(`select_worst`) and deletes every other panel (`prune_panels`). The panels are pure functions
of image, label and prediction, so ``worst/`` ends up equal to the one of a single process.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from vanseg.evaluation.per_image import ImageScore
from vanseg.utils.atomic import write_atomic

__all__ = ["WORST_DIR", "WorstImages", "panel_name", "prune_panels", "select_worst"]

#: The folder of the worst-k panels inside the output folder.
WORST_DIR = "worst"


def panel_name(score: ImageScore) -> str:
    """``000012_ADE_val_00000013.png``: the index first (sorts in dataset order), a safe name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", score.name)[:80]
    return f"{score.index:06d}_{safe}.png"


def select_worst(scores: Iterable[ImageScore], k: int) -> list[ImageScore]:
    """The ``k`` worst scored images, worst first (see the module docstring for the order)."""
    ranked = [s for s in scores if not math.isnan(s.miou)]
    return heapq.nsmallest(k, ranked, key=ImageScore.sort_key)


class WorstImages:
    """A bounded heap of the ``k`` worst images seen by this process, with their panel files.

    Args:
        folder: Where panels go (``<output>/worst``); created on the first panel.
        k: How many to keep; 0 keeps none and renders nothing.
    """

    def __init__(self, folder: Path, k: int) -> None:
        self.folder = folder
        self.k = k
        # Entries ordered so that the heap top is the *best* kept image (evicted first).
        self._heap: list[tuple[float, int, str]] = []

    def offer(self, score: ImageScore, render: Callable[[], np.ndarray]) -> bool:
        """Keep ``score`` if it is among the ``k`` worst so far; returns whether it was kept.

        ``render`` is called only for a kept image; the panel of an evicted one is deleted.
        """
        if self.k <= 0 or math.isnan(score.miou):
            return False
        miou, index = score.sort_key()
        entry = (-miou, -index, panel_name(score))
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, entry)
        elif entry > self._heap[0]:  # worse than the best kept one
            evicted = heapq.heappushpop(self._heap, entry)
            (self.folder / evicted[2]).unlink(missing_ok=True)
        else:
            return False
        panel = Image.fromarray(render())
        write_atomic(self.folder / entry[2], lambda p: panel.save(p, format="PNG"), overwrite=True)
        return True

    def kept(self) -> list[str]:
        """File names of the kept panels, worst first."""
        return [name for _, _, name in sorted(self._heap, reverse=True)]


def prune_panels(folder: Path, keep: Iterable[str]) -> list[str]:
    """Delete every ``*.png`` in ``folder`` not in ``keep``; returns the deleted names."""
    keep = set(keep)
    if not folder.is_dir():
        return []
    removed = sorted(p.name for p in folder.glob("*.png") if p.name not in keep)
    for name in removed:
        (folder / name).unlink()
    return removed
