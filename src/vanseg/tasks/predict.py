"""Segment your own images: label PNGs (class indices, palette mode) and colour overlays.

``predict.py`` at the repository root is the command line; this module holds the logic as plain
functions, a loop over a `vanseg.Segmenter`. For every input image ``<name>.<ext>`` the output
folder gets

* ``labels/<name>.png``: the predicted class indices at the image's own size, a palette-mode
  PNG (so it reads back as indices with PIL and shows in colour in any viewer);
* ``overlays/<name>.jpg``: ``(1 - opacity) * image + opacity * colour``, as mmseg's
  ``show_result`` blends, with a legend of the classes present to the right (``legend``);

plus ``report.json`` (checkpoint, protocol, class names, written, skipped and ignored files).
The segmenter loads the checkpoint and takes its protocol, normalisation, class names and
palette exactly as ``eval.py`` does (`load_checkpoint`, `resolve_inference`, `ModelMeta`), so
both tools, and ``Segmenter`` in Python, give the same mask for the same image; explicit
options still win. Files are written atomically. Nothing is skipped silently: an unreadable
image stops the run with its name, or, with ``skip_unreadable``, is listed in the report;
files without an image extension in an input folder are listed as ignored.
"""

from __future__ import annotations

import glob
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import track

from vanseg.checkpoint.file import require_file
from vanseg.config.trust import apply_trusted_targets
from vanseg.errors import (
    ConfigError,
    DatasetError,
    InputNotFoundError,
    VansegError,
)
from vanseg.inference.assemble import FROM_CHECKPOINT
from vanseg.inference.protocol import InferenceProtocol
from vanseg.segmenter import Segmenter
from vanseg.tasks.predict_outputs import (
    OutputLock,
    check_output_folder,
    check_outputs,
    output_targets,
    shown,
)
from vanseg.utils.atomic import write_atomic

__all__ = [
    "IMAGE_EXTENSIONS",
    "PredictReport",
    "find_images",
    "predict_images",
    "predict_task",
    "run_predict",
]

log = logging.getLogger(__name__)

#: Extensions (lower case) that a folder or glob input treats as images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class PredictReport:
    """What a prediction run did; ``to_dict()`` is what ``report.json`` holds."""

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "written": [str(p) for p in self.written],
            "skipped": [{"file": str(p), "reason": reason} for p, reason in self.skipped],
            "ignored_not_images": [str(p) for p in self.ignored],
        }


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def find_images(spec: str | Path) -> tuple[list[Path], list[Path]]:
    """Resolve ``input``: one file, a folder (not recursive) or a glob (``**`` recurses).

    Returns:
        The sorted image files, and the files that were passed over because their extension is
        not in :data:`IMAGE_EXTENSIONS` (a single file is always taken).

    Raises:
        ConfigError: Nothing matches, or the folder / glob holds no image.
    """
    text = str(spec)
    path = Path(text)
    if path.is_file():
        return [path], []
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        where = f"folder {path}"
    elif glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        where = f"glob {text!r}"
    else:
        raise ConfigError(f"input {text} does not exist (give an image, a folder or a glob)")
    images = [p for p in files if _is_image(p)]
    ignored = [p for p in files if not _is_image(p)]
    if not images:
        found = f"; it holds only {shown(ignored)}" if ignored else ""
        raise ConfigError(
            f"{where} holds no images with extensions {', '.join(IMAGE_EXTENSIONS)}{found}"
        )
    return images, ignored


def predict_images(
    segmenter: Segmenter,
    images: Sequence[Path],
    output: str | Path,
    opacity: float = 0.5,
    skip_unreadable: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    legend: bool = True,
) -> PredictReport:
    """Segment every image and write its label PNG and overlay; see the module docstring.

    Args:
        segmenter: The model with its protocol, class names and palette.
        images: Image files.
        output: Folder for ``labels/`` and ``overlays/``; created if needed.
        opacity: Weight of the class colours in the overlay.
        skip_unreadable: Record unreadable images in the report instead of stopping.
        overwrite: Replace existing outputs instead of refusing to run.
        progress: Show a progress bar.
        legend: Draw a legend of the classes present beside each overlay.

    Raises:
        ConfigError: Existing outputs without ``overwrite``, clashing names, an ``output``
            that is a file (the input image, say), or an unreadable image without
            ``skip_unreadable``.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ConfigError(f"opacity={opacity} is outside [0, 1]")
    output = Path(output)
    check_output_folder(output, images)
    targets = output_targets(images, output)
    check_outputs(targets, output, overwrite)
    with OutputLock(output):
        check_outputs(targets, output, overwrite)  # again, now that no other run can write
        return _predict_locked(
            segmenter, images, output, opacity, skip_unreadable, progress, legend
        )


def _predict_locked(
    segmenter: Segmenter,
    images: Sequence[Path],
    output: Path,
    opacity: float,
    skip_unreadable: bool,
    progress: bool,
    legend: bool,
) -> PredictReport:
    report = PredictReport()
    for path in track(images, description="Predicting", disable=not progress):
        try:
            result = segmenter.segment(path)
        except (DatasetError, InputNotFoundError) as err:
            if not skip_unreadable:
                done = f" ({len(report.written)} images were written before it)"
                raise DatasetError(
                    f"{err}{done if report.written else ''}. Fix or remove the file, or pass "
                    "skip_unreadable=true to skip such files and list them in the report"
                ) from err
            report.skipped.append((path, str(err)))
            continue
        # Outputs were checked above (all at once, before the first image).
        result.save(output, path.stem, overwrite=True, opacity=opacity, legend=legend)
        report.written.append(path)
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
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda:0"``, ...
        skip_unreadable, overwrite, progress, legend: See :func:`predict_images`.
        unsafe_load: Allow checkpoints that need full unpickling (trusted files only).
        precision, fast: See `vanseg.Segmenter` (give each once: here or in ``inference``).
    """
    images, ignored = find_images(input)
    check_output_folder(Path(output), images)  # before the checkpoint loads
    require_file(ckpt_path)  # before the checkpoint loads, as the images were checked
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
        device=device,
    )
    meta, protocol = segmenter.meta, segmenter.protocol
    log.info("predicting %d images with %s", len(images), protocol.describe())
    report = predict_images(
        segmenter, images, output, opacity, skip_unreadable, overwrite, progress, legend
    )
    report.ignored = ignored
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
        **report.to_dict(),
    }
    text = json.dumps(summary, indent=2) + "\n"
    write_atomic(Path(output) / "report.json", lambda tmp: tmp.write_text(text))
    _print_report(report, Path(output))
    return report


def _print_report(report: PredictReport, output: Path) -> None:
    console = Console(stderr=True, soft_wrap=True)
    console.print(
        f"wrote {len(report.written)} label PNGs to {output / 'labels'} "
        f"and overlays to {output / 'overlays'}"
    )
    if report.skipped:
        console.print(f"[bold red]skipped {len(report.skipped)} unreadable files:[/]")
        for path, reason in report.skipped:
            console.print(f"  {path}: {reason}")
    if report.ignored:
        console.print(f"ignored {len(report.ignored)} files without an image extension:")
        console.print(f"  {shown(report.ignored)}")


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
    except ValueError as err:  # option values (palette, opacity) checked by the library
        if isinstance(err, VansegError):
            raise
        raise ConfigError(str(err)) from err
