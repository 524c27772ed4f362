"""Segment your own images: label PNGs (class indices, palette mode) and colour overlays.

``predict.py`` at the repository root is the command line; this module holds the logic as plain
functions. For every input image ``<name>.<ext>`` the output folder gets

* ``labels/<name>.png``: the predicted class indices at the image's own size, a palette-mode
  PNG (so it reads back as indices with PIL and shows in colour in any viewer);
* ``overlays/<name>.jpg``: ``(1 - opacity) * image + opacity * colour``, as mmseg's
  ``show_result`` blends;

plus ``report.json`` (checkpoint, protocol, written, skipped and ignored files). Nothing is
skipped silently: an unreadable image stops the run with its name, or, with
``skip_unreadable``, is listed in the report; files without an image extension in an input
folder are listed as ignored.
"""

from __future__ import annotations

import glob
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.progress import track
from torch import nn

from vanseg.evaluation.inference import InferenceProtocol, predict_mask, set_eval_seed

__all__ = [
    "IMAGE_EXTENSIONS",
    "PredictError",
    "PredictReport",
    "blend",
    "colorize",
    "find_images",
    "palette_array",
    "predict_images",
    "run_predict",
    "save_label",
]

log = logging.getLogger(__name__)

#: Extensions (lower case) that a folder or glob input treats as images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_SHOWN = 5


class PredictError(RuntimeError):
    """Bad input, output or image for prediction; the message says what to change."""


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


def _shown(paths: Sequence[Path | str]) -> str:
    more = f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else ""
    return ", ".join(str(p) for p in paths[:_SHOWN]) + more


def find_images(spec: str | Path) -> tuple[list[Path], list[Path]]:
    """Resolve ``input``: one file, a folder (not recursive) or a glob (``**`` recurses).

    Returns:
        The sorted image files, and the files that were passed over because their extension is
        not in :data:`IMAGE_EXTENSIONS` (a single file is always taken).

    Raises:
        PredictError: Nothing matches, or the folder / glob holds no image.
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
        raise PredictError(f"input {text} does not exist (give an image, a folder or a glob)")
    images = [p for p in files if _is_image(p)]
    ignored = [p for p in files if not _is_image(p)]
    if not images:
        found = f"; it holds only {_shown(ignored)}" if ignored else ""
        raise PredictError(
            f"{where} holds no images with extensions {', '.join(IMAGE_EXTENSIONS)}{found}"
        )
    return images, ignored


def palette_array(num_classes: int, palette: str | Sequence[Sequence[int]] | None) -> np.ndarray:
    """``(K, 3)`` uint8 colours: ``None`` = ADE20K's for 150 classes, else a generated one."""
    from vanseg.data.classes import resolve_palette

    if palette is None:
        palette = "ade20k" if num_classes == 150 else None
    return np.asarray(resolve_palette(palette, num_classes), dtype=np.uint8)


def colorize(mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Class indices ``(H, W)`` -> RGB ``(H, W, 3)`` uint8."""
    return palette[mask]


def blend(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, opacity: float) -> np.ndarray:
    """``(1 - opacity) * image + opacity * colours``, rounded to uint8 (mmseg ``show_result``)."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    mixed = (1.0 - opacity) * image.astype(np.float32) + opacity * colorize(mask, palette)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def save_label(mask: np.ndarray, palette: np.ndarray, path: Path) -> None:
    """Write class indices as a palette-mode PNG (16-bit grayscale beyond 256 classes)."""
    if len(palette) > 256:
        Image.fromarray(mask.astype(np.uint16)).save(path)
        return
    label = Image.fromarray(mask.astype(np.uint8))
    label.putpalette(palette.reshape(-1).tolist())  # turns the "L" image into "P" mode
    label.save(path)


def _targets(images: Sequence[Path], output: Path) -> dict[Path, tuple[Path, Path]]:
    by_stem: dict[str, list[Path]] = {}
    for path in images:
        by_stem.setdefault(path.stem, []).append(path)
    clashes = [p for paths in by_stem.values() if len(paths) > 1 for p in paths]
    if clashes:
        raise PredictError(
            f"several inputs share a file name and would write the same outputs: {_shown(clashes)}"
            "; predict them into separate output folders"
        )
    return {
        p: (output / "labels" / f"{p.stem}.png", output / "overlays" / f"{p.stem}.jpg")
        for p in images
    }


def _check_output(targets: dict[Path, tuple[Path, Path]], output: Path, overwrite: bool) -> None:
    existing = [t for pair in targets.values() for t in pair if t.exists()]
    if (output / "report.json").exists():
        existing.append(output / "report.json")
    if existing and not overwrite:
        raise PredictError(
            f"output folder {output} already holds results ({_shown(existing)}); "
            "pass overwrite=true to replace them, or choose another output folder"
        )


def _read(path: Path) -> np.ndarray:
    from vanseg.data.ade20k import DatasetError, load_image

    try:
        return load_image(path)
    except DatasetError as err:
        cause = err.__cause__ or err
        raise PredictError(f"cannot read image {path}: {cause}") from err


def predict_images(
    model: nn.Module,
    images: Sequence[Path],
    output: str | Path,
    protocol: InferenceProtocol,
    palette: np.ndarray,
    opacity: float = 0.5,
    skip_unreadable: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> PredictReport:
    """Predict every image and write its label PNG and overlay; see the module docstring.

    Args:
        model: Segmentor in eval mode (on the device to use).
        images: Image files.
        output: Folder for ``labels/`` and ``overlays/``; created if needed.
        protocol: Inference protocol (mode, TTA).
        palette: ``(K, 3)`` uint8 colours, one per class.
        opacity: Weight of the class colours in the overlay.
        skip_unreadable: Record unreadable images in the report instead of stopping.
        overwrite: Replace existing outputs instead of refusing to run.
        progress: Show a progress bar.

    Raises:
        PredictError: Existing outputs without ``overwrite``, clashing names, or an unreadable
            image without ``skip_unreadable``.
    """
    output = Path(output)
    targets = _targets(images, output)
    _check_output(targets, output, overwrite)
    for sub in ("labels", "overlays"):
        (output / sub).mkdir(parents=True, exist_ok=True)
    report = PredictReport()
    for path in track(images, description="Predicting", disable=not progress):
        try:
            image = _read(path)
        except PredictError as err:
            if not skip_unreadable:
                done = f" ({len(report.written)} images were written before it)"
                raise PredictError(
                    f"{err}{done if report.written else ''}. Fix or remove the file, or pass "
                    "skip_unreadable=true to skip such files and list them in the report"
                ) from err
            report.skipped.append((path, str(err)))
            continue
        mask = predict_mask(model, image, protocol).cpu().numpy()
        label_path, overlay_path = targets[path]
        save_label(mask, palette, label_path)
        Image.fromarray(blend(image, mask, palette, opacity)).save(overlay_path, quality=95)
        report.written.append(path)
    return report


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def run_predict(
    ckpt_path: str | Path,
    input: str | Path,
    output: str | Path,
    protocol: InferenceProtocol,
    opacity: float = 0.5,
    palette: str | Sequence[Sequence[int]] | None = None,
    eval_seed: int | None = None,
    device: str = "auto",
    skip_unreadable: bool = False,
    overwrite: bool = False,
    unsafe_load: bool = False,
    progress: bool = True,
    precision: str = "fp32",
    fast: bool = False,
) -> PredictReport:
    """Load a checkpoint, predict the ``input`` images into ``output``, write ``report.json``.

    Args:
        ckpt_path: A vanseg checkpoint (trained, or converted from the original).
        input: An image, a folder or a glob (see :func:`find_images`).
        output: Output folder.
        protocol: Inference protocol.
        opacity: Overlay colour weight.
        palette: ``None`` (ADE20K colours for 150 classes, else generated), ``"ade20k"`` or
            a list of ``[r, g, b]``.
        eval_seed: Seed of the Ham heads' NMF bases (reproducible output); ``None`` keeps the
            original's fresh random bases at every forward.
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda:0"``, ...
        skip_unreadable, overwrite, progress: See :func:`predict_images`.
        unsafe_load: Allow checkpoints that need full unpickling (trusted files only).
        precision, fast: ``inference.precision`` / ``inference.fast``
            (:func:`vanseg.optimize.for_inference`).
    """
    from vanseg.api import load_model
    from vanseg.optimize import OptimizeError, for_inference

    images, ignored = find_images(input)
    if not Path(ckpt_path).is_file():
        raise PredictError(f"checkpoint not found: {ckpt_path}")
    model = load_model(ckpt_path, unsafe_load=unsafe_load).to(_device(device)).eval()
    if eval_seed is not None:
        set_eval_seed(model, eval_seed)
    try:
        model = for_inference(model, precision, fast)
    except OptimizeError as err:
        raise PredictError(str(err)) from err
    colours = palette_array(model.num_classes, palette)
    log.info("predicting %d images with %s", len(images), protocol.describe())
    report = predict_images(
        model, images, output, protocol, colours, opacity, skip_unreadable, overwrite, progress
    )
    report.ignored = ignored
    summary = {
        "checkpoint": str(ckpt_path),
        "num_classes": model.num_classes,
        "protocol": protocol.to_dict(),
        "protocol_text": protocol.describe(),
        "eval_seed": eval_seed,
        "precision": precision,
        "fast": fast,
        **report.to_dict(),
    }
    (Path(output) / "report.json").write_text(json.dumps(summary, indent=2))
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
        console.print(f"  {_shown(report.ignored)}")
