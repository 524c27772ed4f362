"""Scan a whole dataset once and report every problem at once.

    python -m vanseg.data.check data=ade20k
    python -m vanseg.data.check data=folder data.root=/data/mine data.num_classes=4 --workers 2

Checks both splits for: missing folders, unpaired images/labels, names held by two images or two
labels, unreadable, corrupt or damaged (libjpeg warnings) images and labels, colour (RGB/RGBA)
label files, label values outside ``{0..K-1, ignore}`` after ``reduce_zero_label``, and
image/label size mismatches. Prints a per-class pixel summary of the training split and notes on
unusual image kinds (16-bit, grayscale, RGBA, palette), which are read as the original reads
them, and on images with an EXIF orientation (read unrotated). Exits with status 1 if anything
is wrong.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vanseg.data.ade20k import load_image, load_label
from vanseg.data.classes import IGNORE_INDEX
from vanseg.data.scan import scan
from vanseg.errors import DatasetError
from vanseg.utils.cli import split_overrides, tool_parser, user_errors

__all__ = ["CheckReport", "check_dataset", "check_pair", "main"]

#: The command as users type it: starts every usage and error line.
PROG = "python -m vanseg.data.check"


@dataclass
class CheckReport:
    """Result of `check_dataset`.

    Attributes:
        problems: One human-readable line (or paragraph) per problem.
        pairs: Number of image/label pairs per split.
        class_pixels: Pixels per class (after reduction) over the checked training pairs.
        notes: Valid but unusual files (16-bit, grayscale, RGBA, palette images), by kind.
    """

    problems: list[str] = field(default_factory=list)
    pairs: dict[str, int] = field(default_factory=dict)
    class_pixels: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_pair(
    paths: tuple[Path, Path], num_classes: int, reduce_zero_label: bool, ignore_index: int
) -> tuple[list[str], np.ndarray | None]:
    """Check one pair fully (decodes both files).

    Returns:
        The problems found, and the label's per-class pixel counts (``None`` if unreadable).
    """
    image_path, label_path = paths
    problems, image, label = [], None, None
    try:
        image = load_image(image_path)
    except DatasetError as err:
        problems.append(str(err))
    try:
        label = load_label(label_path, num_classes, reduce_zero_label, ignore_index)
    except DatasetError as err:
        problems.append(str(err))
    if image is not None and label is not None and image.shape[:2] != label.shape:
        problems.append(
            f"Image {image_path} is {image.shape[1]}x{image.shape[0]} (WxH) but its label "
            f"{label_path} is {label.shape[1]}x{label.shape[0]}; they must be the same size."
        )
    counts = None
    if label is not None:
        counts = np.bincount(label.ravel(), minlength=256)[:num_classes]
    return problems, counts


def check_dataset(
    root: str | Path,
    num_classes: int,
    reduce_zero_label: bool,
    ignore_index: int = IGNORE_INDEX,
    splits: Sequence[str] = ("training", "validation"),
    image_suffixes: Sequence[str] = (".jpg",),
    label_suffix: str = ".png",
    workers: int = 0,
    progress: bool = True,
) -> CheckReport:
    """Check every file of the given splits and collect all problems.

    Args:
        root: Dataset folder with ``images/`` and ``annotations/``.
        num_classes: Number of classes K after reduction.
        reduce_zero_label: Whether raw 0 is "unlabelled" (ADE20K).
        ignore_index: Label of ignored pixels.
        splits: Split folder names to check.
        image_suffixes: Image extensions.
        label_suffix: Label extension.
        workers: Processes used to decode files; 0 decodes in this process.
        progress: Show a progress bar.
    """
    found = scan(
        root,
        splits,
        "full",
        num_classes,
        reduce_zero_label,
        ignore_index,
        image_suffixes,
        label_suffix,
        workers=workers,
        progress=progress,
    )
    return CheckReport(found.problems, found.pairs, found.class_pixels, found.notes)


def format_report(report: CheckReport, class_names: Sequence[str]) -> str:
    """Human-readable summary: pair counts, class coverage and every problem."""
    lines = [f"pairs: {report.pairs}"]
    if report.class_pixels is not None and report.class_pixels.sum() > 0:
        share = report.class_pixels / report.class_pixels.sum()
        absent = [name for name, n in zip(class_names, report.class_pixels, strict=True) if n == 0]
        top = np.argsort(-share)[:5]
        lines.append(
            "most frequent classes (first split): "
            + ", ".join(f"{class_names[i]} {100 * share[i]:.1f}%" for i in top)
        )
        if absent:
            lines.append(f"{len(absent)} class(es) never appear: {', '.join(absent[:20])}")
    lines.extend(f"note: {note}" for note in report.notes)
    if report.ok:
        lines.append("no problems found")
    else:
        lines.append(f"{len(report.problems)} problem(s):")
        lines.extend(f"- {problem}" for problem in report.problems)
    return "\n".join(lines)


@user_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0: clean, 1: problems found)."""
    from hydra.utils import instantiate

    from vanseg.config.compose import compose_config

    parser = tool_parser(PROG, __doc__)
    parser.add_argument("--workers", type=int, default=0, help="decoding processes (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args, overrides = split_overrides(parser, argv)

    cfg = compose_config(overrides)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_files()
    print(f"checking {datamodule.name} at {datamodule.root}")
    report = check_dataset(
        datamodule.root,
        datamodule.num_classes,
        datamodule.reduce_zero_label,
        datamodule.ignore_index,
        (datamodule.train_split, datamodule.val_split),
        datamodule.image_suffixes,
        datamodule.label_suffix,
        workers=args.workers,
        progress=not args.no_progress,
    )
    print(format_report(report, datamodule.class_names))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
