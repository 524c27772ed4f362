"""The prediction loop of one process: readers, the model, writers, each at its own pace.

* DataLoader workers (``num_workers``; 0 reads in this process) read and decode each image and
  build its pass inputs (`vanseg.inference.preprocess.pass_inputs`), or, with ``resume``, find
  that its outputs are already complete (`outputs_complete`) and hand over only that fact.
* This process runs the model on the passes (batched as `vanseg.inference.batched` allows) and
  turns them into a mask (or probabilities) exactly as `vanseg.Segmenter` does.
* A small thread pool (``writers``) encodes and writes the outputs atomically, journalling each
  image (`vanseg.tasks.predict_journal`); at most ``2 x writers`` images wait for it.

The DataLoader gets its own generator, so the global random state (the Ham heads' bases when
``eval_seed`` is null) sees the same draws as a plain loop. SIGTERM stops the loop like Ctrl-C:
the images being written are finished and journalled, the rest are left for ``resume=true``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vanseg.errors import DatasetError, InputNotFoundError
from vanseg.inference.batched import Passes, run_passes, usable_batch_size
from vanseg.inference.images import read_image
from vanseg.inference.passes import mask_of_passes, probs_of_passes
from vanseg.inference.preprocess import pass_inputs
from vanseg.inference.protocol import InferenceProtocol
from vanseg.segmenter import SegmentationResult, Segmenter
from vanseg.tasks.predict_journal import Journal, outputs_complete
from vanseg.utils.atomic import write_atomic

__all__ = ["PipelineOptions", "ShardReport", "predict_shard"]

log = logging.getLogger("vanseg")


@dataclass(frozen=True)
class PipelineOptions:
    """How one process predicts its shard (``conf/predict.yaml``, ``predict:`` node)."""

    outputs: str = "both"
    num_workers: int = 0
    batch_size: int = 1
    writers: int = 2
    opacity: float = 0.5
    legend: bool = True
    skip_unreadable: bool = False
    resume: bool = False
    progress: bool = True
    progress_every: float = 10.0  # seconds between progress lines


@dataclass
class ShardReport:
    """What one process did: inputs written, complete before (resume), unreadable."""

    written: list[Path] = field(default_factory=list)
    already_complete: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


@dataclass
class _Item:
    path: Path
    rgb: np.ndarray | None = None  # None: complete (resume) or unreadable
    passes: Passes | None = None
    error: str | None = None


class _Inputs(Dataset):
    """Image ``i``: its pass inputs, or the fact that its outputs are complete or unreadable."""

    def __init__(
        self,
        images: Sequence[Path],
        targets: dict[Path, tuple[Path, ...]],
        protocol: InferenceProtocol,
        finished: frozenset[str] | None,
        num_classes: int,
    ) -> None:
        self.images, self.targets, self.protocol = list(images), targets, protocol
        self.finished, self.num_classes = finished, num_classes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> _Item:
        path = self.images[index]
        if self.finished is not None and path.stem in self.finished:
            if outputs_complete(path, self.targets[path], self.num_classes):
                return _Item(path)
        try:
            rgb, _ = read_image(path)
        except (DatasetError, InputNotFoundError) as err:
            return _Item(path, error=str(err))
        return _Item(path, rgb, list(pass_inputs(rgb, self.protocol)))


def _as_is(item: _Item) -> _Item:
    return item


class _Progress:
    """``predict: 120/400 images (rank 0), 3.1 img/s, ETA 0:01:30`` every few seconds."""

    def __init__(self, total: int, every: float, enabled: bool, where: str) -> None:
        self.total, self.every, self.enabled, self.where = total, every, enabled, where
        self.count, self.start = 0, time.monotonic()
        self.last = self.start

    def step(self) -> None:
        self.count += 1
        now = time.monotonic()
        if self.enabled and (now - self.last >= self.every or self.count == self.total):
            self.last = now
            rate = self.count / max(now - self.start, 1e-9)
            eta = int((self.total - self.count) / rate) if rate > 0 else 0
            log.info(
                "predict: %d/%d images%s, %.2f img/s, ETA %d:%02d:%02d",
                self.count, self.total, self.where, rate, eta // 3600, eta // 60 % 60, eta % 60,
            )  # fmt: skip


class _Writers:
    """A thread pool that writes outputs; at most ``2 x workers`` images wait for it."""

    def __init__(self, workers: int, journal: Journal) -> None:
        self.journal = journal
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="vanseg-writer")
        self.pending: deque[Future[None]] = deque()
        self.limit = 2 * max(1, workers)

    def submit(self, fn: Any, *args: Any) -> None:
        while len(self.pending) >= self.limit:
            self.pending.popleft().result()  # a write error surfaces here
        self.pending.append(self.pool.submit(fn, *args))

    def close(self) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _write(
    result: SegmentationResult,
    targets: tuple[Path, ...],
    options: PipelineOptions,
    journal: Journal,
) -> None:
    name = targets[0].stem
    journal.begin(name)
    for target in targets:
        if target.suffix == ".npz":
            assert result.probs is not None
            probs = result.probs.astype(np.float16)

            def save(tmp: Path, probs: np.ndarray = probs) -> None:
                with open(tmp, "wb") as handle:
                    np.savez_compressed(handle, probs=probs)

            write_atomic(target, save)
        elif target.parent.name == "labels":
            result.write(label=target)
        else:
            result.write(overlay=target, opacity=options.opacity, legend=options.legend)
    journal.done(name)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def predict_shard(
    segmenter: Segmenter,
    images: Sequence[Path],
    targets: dict[Path, tuple[Path, ...]],
    options: PipelineOptions,
    journal: Journal,
    finished: frozenset[str] | None,
    where: str = "",
) -> ShardReport:
    """Predict ``images`` into their ``targets`` (see the module docstring).

    Args:
        segmenter: Model, protocol, class names and palette.
        images: This process's images.
        targets: The output files of every image (`output_targets`).
        options: See :class:`PipelineOptions`.
        journal: This process's open journal.
        finished: With ``resume``, the names an earlier run finished (checked again here).
        where: Added to progress lines (`` (rank 1 of 2)``).

    Raises:
        DatasetError: An unreadable image without ``skip_unreadable`` (after the images before
            it are written).
    """
    report = ShardReport()
    batch_size = usable_batch_size(segmenter.runner.forward, options.batch_size)
    dataset = _Inputs(images, targets, segmenter.protocol, finished, segmenter.meta.num_classes)
    loader = DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=options.num_workers,
        collate_fn=_as_is,
        generator=torch.Generator(),  # the global random state stays the plain loop's
    )
    progress = _Progress(len(images), options.progress_every, options.progress, where)
    writers = _Writers(options.writers, journal)
    group: list[_Item] = []
    iterator = iter(loader)  # workers start (fork) before the handler below is installed
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        for item in iterator:
            if item.error is not None:
                if not options.skip_unreadable:
                    _run(segmenter, group, targets, options, writers, report, batch_size, progress)
                    writers.close()
                    done = f" ({len(report.written)} images were written before it)"
                    raise DatasetError(
                        f"{item.error}{done if report.written else ''}. Fix or remove the file, "
                        "or pass skip_unreadable=true to skip such files and list them in the "
                        "report"
                    )
                report.skipped.append((item.path, item.error))
                progress.step()
            elif item.rgb is None:
                report.already_complete.append(item.path)
                progress.step()
            else:
                group.append(item)
                if len(group) == batch_size:
                    _run(segmenter, group, targets, options, writers, report, batch_size, progress)
        _run(segmenter, group, targets, options, writers, report, batch_size, progress)
    finally:
        if main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        writers.close()  # the images in flight are finished and journalled
    return report


def _run(
    segmenter: Segmenter,
    group: list[_Item],
    targets: dict[Path, tuple[Path, ...]],
    options: PipelineOptions,
    writers: _Writers,
    report: ShardReport,
    batch_size: int,
    progress: _Progress,
) -> None:
    if not group:
        return
    protocol = segmenter.protocol
    passes = [item.passes for item in group if item.passes is not None]
    logits = run_passes(segmenter.runner.forward, passes, protocol, segmenter.device, batch_size)
    for item, image_logits in zip(group, logits, strict=True):
        assert item.rgb is not None
        size = (item.rgb.shape[0], item.rgb.shape[1])
        if options.outputs == "probs":
            probs = probs_of_passes(image_logits, protocol, size)[0]
            mask, p = probs.argmax(dim=0).cpu().numpy(), probs.cpu().numpy()
        else:
            mask, p = mask_of_passes(image_logits, protocol, size).cpu().numpy(), None
        del image_logits
        result = SegmentationResult(
            item.rgb, mask, p, segmenter.classes, segmenter.palette, item.path
        )
        writers.submit(_write, result, targets[item.path], options, writers.journal)
        report.written.append(item.path)
        progress.step()
    group.clear()
