"""Segment your own images: label PNGs (class indices, palette mode) and colour overlays.

``predict.py`` at the repository root is the command line; this module holds the logic as plain
functions around a `vanseg.Segmenter`. For every input image ``<name>.<ext>`` the output
folder gets (``predict.outputs``)

* ``labels/<name>.png``: the predicted class indices at the image's own size, a palette-mode
  PNG (so it reads back as indices with PIL and shows in colour in any viewer);
* ``overlays/<name>.jpg``: ``(1 - opacity) * image + opacity * colour``, as mmseg's
  ``show_result`` blends, with a legend of the classes present to the right (``legend``);
* or, with ``outputs=probs``, ``probs/<name>.npz``: the class probabilities ``(K, H, W)`` as
  float16 (``np.load(path)["probs"]``);

plus ``report.json`` (checkpoint, protocol, class names, counts, written, kept, skipped and
ignored files). The segmenter loads the checkpoint and takes its protocol, normalisation, class
names and palette exactly as ``eval.py`` does, so both tools, and ``Segmenter`` in Python, give
the same mask for the same image; explicit options still win. The images go through a pipeline
(`vanseg.tasks.predict_pipeline`: reader processes, the model, writer threads); under
``torchrun`` each process predicts a contiguous shard and rank 0 merges the report. Files are
written atomically and journalled (`vanseg.tasks.predict_journal`), so ``resume=true`` after a
crash predicts only what is missing or damaged. Nothing is skipped silently: an unreadable
image stops the run with its name, or, with ``skip_unreadable``, is listed in the report;
files without an image extension in an input folder are listed as ignored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from vanseg.checkpoint.file import require_file
from vanseg.config.trust import apply_trusted_targets
from vanseg.data.sampler import ShardSampler
from vanseg.errors import ConfigError, VansegError
from vanseg.inference.assemble import FROM_CHECKPOINT
from vanseg.inference.protocol import InferenceProtocol
from vanseg.segmenter import Segmenter
from vanseg.tasks.predict_inputs import IMAGE_EXTENSIONS, find_images
from vanseg.tasks.predict_journal import (
    Journal,
    finished_stems,
    remove_journals,
    remove_unfinished_writes,
    started_stems,
)
from vanseg.tasks.predict_outputs import (
    OUTPUT_KINDS,
    OutputLock,
    check_output_folder,
    check_outputs,
    output_targets,
)
from vanseg.tasks.predict_pipeline import PipelineOptions, predict_shard
from vanseg.utils.atomic import write_atomic
from vanseg.utils.distributed import (
    barrier,
    distributed,
    gather_objects,
    get_world_size,
    is_rank_zero,
    rank_and_world_size,
    resolve_device,
)
from vanseg.utils.text import few

__all__ = [
    "IMAGE_EXTENSIONS",
    "PredictReport",
    "find_images",
    "predict_images",
    "predict_task",
    "run_predict",
]

log = logging.getLogger(__name__)


@dataclass
class PredictReport:
    """What a prediction run did (all processes); ``to_dict()`` is what ``report.json`` holds.

    ``counts``: ``done`` (written now), ``skipped`` (complete before, ``resume=true``) and
    ``failed`` (unreadable, ``skip_unreadable=true``; listed under ``skipped`` with the reason,
    the key that report.json has always used for them).
    """

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    already_complete: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": {
                "done": len(self.written),
                "skipped": len(self.already_complete),
                "failed": len(self.skipped),
            },
            "written": [str(p) for p in self.written],
            "already_complete": [str(p) for p in self.already_complete],
            "skipped": [{"file": str(p), "reason": reason} for p, reason in self.skipped],
            "ignored_not_images": [str(p) for p in self.ignored],
        }


def _check_options(opacity: float, options: PipelineOptions, overwrite: bool) -> None:
    if not 0.0 <= opacity <= 1.0:
        raise ConfigError(f"opacity={opacity} is outside [0, 1]")
    for key, low in (("num_workers", 0), ("batch_size", 1), ("writers", 1)):
        value = getattr(options, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"predict.{key}={value!r} must be an integer >= {low}")
    if options.resume and overwrite:
        raise ConfigError(
            "resume=true keeps complete outputs and overwrite=true replaces them; give one"
        )


def _agree(error: VansegError | None) -> None:
    """Raise the first error of any process on every process (all stop, or none)."""
    first = next((e for e in gather_objects(error) if e is not None), None)
    if first is not None:
        raise first


def _attempt(check: Callable[[], object]) -> VansegError | None:
    try:
        check()
    except VansegError as err:
        return err
    return None


def predict_images(
    segmenter: Segmenter,
    images: Sequence[Path],
    output: str | Path,
    opacity: float = 0.5,
    skip_unreadable: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    legend: bool = True,
    resume: bool = False,
    options: PipelineOptions | None = None,
    summary: Mapping[str, Any] | None = None,
    ignored: Sequence[Path] = (),
) -> PredictReport:
    """Segment every image and write its outputs; see the module docstring.

    Under ``torchrun`` (a joined process group) each process takes its contiguous shard
    (`ShardSampler`); rank 0 holds ``.predict.lock`` for all of them and merges the reports.

    Args:
        segmenter: The model with its protocol, class names and palette.
        images: Image files (all of them, on every process).
        output: Folder for ``labels/``, ``overlays/``, ``probs/``; created if needed.
        opacity: Weight of the class colours in the overlay.
        skip_unreadable: Record unreadable images in the report instead of stopping.
        overwrite: Replace earlier outputs instead of refusing to run.
        progress: Log progress lines (images, img/s, ETA).
        legend: Draw a legend of the classes present beside each overlay.
        resume: Keep the complete outputs of an earlier run, predict the rest.
        options: Outputs, workers, batch size, writers (these arguments win over its fields).
        summary: Written first into ``report.json`` (checkpoint, protocol, ...) by rank 0;
            ``None`` writes no report.
        ignored: Files of the input that are not images, listed in the report.

    Raises:
        ConfigError: Existing outputs without ``overwrite`` or ``resume``, clashing names, an
            ``output`` that is a file (the input image, say), or an unreadable image without
            ``skip_unreadable``.
    """
    options = replace(
        options or PipelineOptions(),
        opacity=opacity,
        legend=legend,
        skip_unreadable=skip_unreadable,
        resume=resume,
        progress=progress,
    )
    _check_options(opacity, options, overwrite)
    output = Path(output)
    rank, world_size = rank_and_world_size()
    if len(images) < world_size:
        raise ConfigError(f"{len(images)} images for {world_size} processes; start fewer")
    check_output_folder(output, images)
    targets = output_targets(images, output, options.outputs)
    shard = ShardSampler(len(images), rank, world_size)
    mine = [images[i] for i in shard]
    mine_targets = {p: targets[p] for p in mine}
    _agree(_attempt(lambda: check_outputs(mine_targets, output, overwrite, resume)))
    lock = OutputLock(output) if rank == 0 else nullcontext()
    _agree(_attempt(lock.__enter__) if rank == 0 else None)
    try:
        # Before any process writes (the check below waits for every process).
        if rank == 0 and (resume or overwrite):
            left = remove_unfinished_writes(output, started_stems(output))
            if left:
                log.warning(
                    "removed %d unfinished writes of a stopped run: %s", len(left), few(left)
                )
        finished = frozenset(finished_stems(output)) if resume else None
        # Again, now that no other run can write.
        _agree(_attempt(lambda: check_outputs(mine_targets, output, overwrite, resume)))
        where = f" (rank {rank} of {world_size})" if world_size > 1 else ""
        with Journal(output, rank) as journal:
            shard_report = predict_shard(
                segmenter, mine, mine_targets, options, journal, finished, where
            )
        report = PredictReport(ignored=list(ignored))
        for part in gather_objects(shard_report):
            report.written += part.written
            report.already_complete += part.already_complete
            report.skipped += part.skipped
        if rank == 0 and summary is not None:
            text = json.dumps({**summary, **report.to_dict()}, indent=2) + "\n"
            write_atomic(output / "report.json", lambda tmp: tmp.write_text(text))
            remove_journals(output)  # report.json lists everything now
        barrier()
    finally:
        lock.__exit__(None, None, None)
    return report


def run_predict(
    ckpt_path: str | Path,
    input: str | Path,
    output: str | Path,
    inference: Mapping[str, Any] | None = None,
    tta: str | None = None,
    protocol: InferenceProtocol | None = None,
    opacity: float = 0.5,
    palette: str | Sequence[Sequence[int]] | None = FROM_CHECKPOINT,
    eval_seed: int | None = None,
    device: str = "auto",
    skip_unreadable: bool = False,
    overwrite: bool = False,
    unsafe_load: bool = False,
    progress: bool = True,
    legend: bool = True,
    precision: str | None = None,
    fast: bool | None = None,
    resume: bool = False,
    predict: Mapping[str, Any] | None = None,
) -> PredictReport:
    """Load a checkpoint, predict the ``input`` images into ``output``, write ``report.json``.

    Args:
        ckpt_path: A vanseg checkpoint (trained, or converted from the original).
        input: An image, a folder or a glob (see :func:`find_images`).
        output: Output folder.
        inference: ``inference`` options as in ``conf/predict.yaml``; ``"checkpoint"`` values
            (and missing keys) take the checkpoint's default test protocol, as ``eval.py``.
            ``precision`` and ``fast`` in it select `vanseg.accel.optimize.for_inference`.
        tta: ``None`` or ``"ms_flip"`` (``test.py --aug-test``).
        protocol: A ready protocol instead of ``inference``/``tta`` (the normalisation is
            then the protocol's own).
        opacity: Overlay colour weight.
        palette: ``"checkpoint"`` (the checkpoint's palette), ``"ade20k"``, ``None``
            (generated) or a list of ``[r, g, b]``.
        eval_seed: Seed of the Ham heads' NMF bases (reproducible output); ``None`` keeps the
            original's fresh random bases at every forward.
        device: ``"auto"`` (CUDA if available; under torchrun this process's GPU), ``"cpu"``...
        skip_unreadable, overwrite, progress, legend, resume: See :func:`predict_images`.
        unsafe_load: Allow checkpoints that need full unpickling (trusted files only).
        precision, fast: See `vanseg.Segmenter` (give each once: here or in ``inference``).
        predict: The ``predict:`` node: ``outputs`` (labels, overlays, both, probs),
            ``num_workers``, ``batch_size``, ``writers`` (:class:`PipelineOptions`).
    """
    images, ignored = find_images(input)
    check_output_folder(Path(output), images)  # before the checkpoint loads
    require_file(ckpt_path)  # before the checkpoint loads, as the images were checked
    options = _pipeline_options(predict)
    output_targets(images, Path(output), options.outputs)  # names and outputs, checked early
    where = resolve_device(str(device))
    with distributed(where):
        segmenter = Segmenter.from_checkpoint(
            ckpt_path,
            unsafe_load=unsafe_load,
            inference=inference,
            tta=tta,
            protocol=protocol,
            precision=precision,
            fast=fast,
            palette=palette,
            eval_seed=eval_seed,
            device=where,
        )
        meta, protocol = segmenter.meta, segmenter.protocol
        if is_rank_zero():
            log.info("predicting %d images with %s", len(images), protocol.describe())
        summary = {
            "checkpoint": str(ckpt_path),
            "num_classes": meta.num_classes,
            "family": meta.family,
            "class_names": list(meta.class_names),
            "protocol": protocol.to_dict(),
            "protocol_text": protocol.describe(),
            "precision": segmenter.precision,
            "fast": segmenter.fast,
            "eval_seed": eval_seed,
            "outputs": options.outputs,
            "processes": get_world_size(),
        }
        report = predict_images(
            segmenter, images, output, opacity, skip_unreadable, overwrite, progress, legend,
            resume, options, summary, ignored,
        )  # fmt: skip
        if is_rank_zero():
            _print_report(report, Path(output), options.outputs)
    return report


def _pipeline_options(predict: Mapping[str, Any] | None) -> PipelineOptions:
    known = {"outputs", "num_workers", "batch_size", "writers"}
    given = dict(predict or {})
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(f"unknown predict options {unknown}; known: {sorted(known)}")
    return PipelineOptions(**given)


def _print_report(report: PredictReport, output: Path, outputs: str) -> None:
    console = Console(stderr=True, soft_wrap=True)
    folders = " and ".join(str(output / d) for d, _ in OUTPUT_KINDS[outputs])
    console.print(f"wrote the outputs of {len(report.written)} images to {folders}")
    if report.already_complete:
        console.print(f"kept the complete outputs of {len(report.already_complete)} images")
    if report.skipped:
        console.print(f"[bold red]skipped {len(report.skipped)} unreadable files:[/]")
        for path, reason in report.skipped:
            console.print(f"  {path}: {reason}")
    if report.ignored:
        console.print(f"ignored {len(report.ignored)} files without an image extension:")
        console.print(f"  {few(report.ignored)}")


def predict_task(cfg: DictConfig) -> PredictReport:
    """``predict.py``: segment ``cfg.input`` into ``cfg.output`` as ``conf/predict.yaml`` says."""
    apply_trusted_targets(cfg)
    missing = [key for key in ("ckpt_path", "input", "output") if OmegaConf.is_missing(cfg, key)]
    if missing:
        raise ConfigError(f"missing {' '.join(k + '=...' for k in missing)}")
    options = OmegaConf.to_container(cfg, resolve=True)
    options.pop("trusted_targets", None)  # applied above
    try:
        return run_predict(**options)
    except KeyboardInterrupt:
        log.error(
            "predict.py stopped: the outputs written so far are complete; run again with "
            "resume=true to predict the rest"
        )
        raise SystemExit(130) from None
    except ValueError as err:  # option values (palette, opacity) checked by the library
        if isinstance(err, VansegError):
            raise
        raise ConfigError(str(err)) from err
