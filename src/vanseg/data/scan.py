"""The up-front dataset scan: every problem of both splits listed before step 0.

``data.verify`` chooses how deep it looks:

* ``headers`` (default, seconds for ADE20K): pairing, then each file's header: format, size,
  mode and bit depth of images, mode of labels, image/label size match, sizes PIL refuses as
  decompression bombs. A file whose end marker is missing (a JPEG without ``FFD9``, a PNG
  without ``IEND``: cut short) is decoded to confirm. Label *values* are not read.
* ``full``: decodes every image and label as training will (label values against
  ``num_classes`` included), and every JPEG once more to hear libjpeg's damage warnings
  (`vanseg.data.image_io.jpeg_damage`); for a first run on new data.
* ``off``: pairing only.

Pairing (every mode) also lists names held by two images or two labels (``x.jpg`` and
``x.png``): none of them is used. Unusual but valid image kinds (16-bit, grayscale, RGBA,
palette, CMYK) are reported as notes: they are read as the original reads them
(`vanseg.data.image_io`); so are images with an EXIF orientation, read as stored, unrotated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from vanseg.data.ade20k import (
    INDEX_MODES,
    duplicates_message,
    load_image,
    load_label,
    reason,
    scan_split,
    unpaired_message,
)
from vanseg.data.classes import IGNORE_INDEX
from vanseg.data.image_io import exif_orientation, image_kind, jpeg_damage
from vanseg.errors import ConfigError, DatasetError, InputNotFoundError

__all__ = ["VERIFY_MODES", "PairResult", "ScanReport", "check_verify_mode", "probe_pair", "scan"]

#: Values of ``data.verify``.
VERIFY_MODES = ("headers", "full", "off")
#: File names listed per note before "...".
_SHOWN = 3
_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
#: End markers: a file without one in its last bytes was probably cut short.
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}


def check_verify_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`VERIFY_MODES`, else raise a `ConfigError`."""
    if mode not in VERIFY_MODES:
        raise ConfigError(f"data.verify={mode!r} is not one of {'|'.join(VERIFY_MODES)}")
    return mode


@dataclass
class PairResult:
    """What :func:`probe_pair` found for one image/label pair."""

    problems: list[str] = field(default_factory=list)
    kind: str | None = None  # how the image differs from plain 8-bit RGB
    orientation: int = 1  # EXIF orientation of the image (1: none)
    size: tuple[int, int] | None = None  # image (W, H)
    counts: np.ndarray | None = None  # label pixels per class (full mode only)


@dataclass
class ScanReport:
    """Everything :func:`scan` found: problems (to fix) and notes (to know)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pairs: dict[str, int] = field(default_factory=dict)
    class_pixels: np.ndarray | None = None
    first_split_sizes: list[tuple[int, int]] = field(default_factory=list)  # image (W, H)

    @property
    def ok(self) -> bool:
        return not self.problems


def _cut_short(path: Path, fmt: str | None) -> bool:
    marker = _END_MARKERS.get(fmt or "")
    if marker is None:
        return False
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 64))
        return marker not in handle.read()


class Header(NamedTuple):
    """What a file's header says."""

    size: tuple[int, int]  # (W, H) as stored
    mode: str
    kind: str | None  # see `image_kind`
    format: str | None
    orientation: int  # EXIF orientation, 1 if none


def _header(path: Path) -> Header:
    """The file's header; a file cut short is decoded to confirm."""
    with Image.open(path) as img:
        header = Header(img.size, img.mode, image_kind(img), img.format, exif_orientation(img))
        if _cut_short(path, img.format):
            img.load()  # raises "image file is truncated" if it really is
    return header


def _size_problem(image: Path, isize: tuple[int, int], label: Path, lsize: tuple[int, int]) -> str:
    return (
        f"Image {image} is {isize[0]}x{isize[1]} (WxH) but its label {label} is "
        f"{lsize[0]}x{lsize[1]}; they must be the same size."
    )


def probe_pair(
    paths: tuple[Path, Path],
    mode: str,
    num_classes: int,
    reduce_zero_label: bool,
    ignore_index: int,
) -> PairResult:
    """Check one pair, by its headers (``mode="headers"``) or fully decoded (``"full"``)."""
    image_path, label_path = paths
    result = PairResult()
    try:
        header = _header(image_path)
        result.size, result.kind, result.orientation = header.size, header.kind, header.orientation
        if mode == "full":
            load_image(image_path)
            damage = jpeg_damage(image_path) if header.format == "JPEG" else []
            if damage:
                result.problems.append(
                    f"Image {image_path} is damaged: libjpeg reports '{damage[0]}' and decodes "
                    "part of it to garbage. Replace or delete the file (and its label)."
                )
    except DatasetError as err:
        result.problems.append(str(err))
    except _READ_ERRORS as err:
        result.problems.append(
            f"Cannot read image {image_path}: {reason(err)}. Replace or delete the file (and its "
            "label)."
        )
    label_size = None
    try:
        if mode == "full":
            label = load_label(label_path, num_classes, reduce_zero_label, ignore_index)
            label_size = (label.shape[1], label.shape[0])
            result.counts = np.bincount(label.ravel(), minlength=256)[:num_classes]
        else:
            label_size, label_mode = _header(label_path)[:2]
            if label_mode not in INDEX_MODES:
                result.problems.append(
                    f"Label {label_path} is a {label_mode}-mode image; labels must be "
                    "single-channel class indices (grayscale 'L' or palette 'P' PNG). Convert "
                    "colour masks to index PNGs, one value per class."
                )
    except DatasetError as err:
        result.problems.append(str(err))
    except _READ_ERRORS as err:
        result.problems.append(
            f"Cannot read label {label_path}: {reason(err)}. Replace or delete it."
        )
    if result.size is not None and label_size is not None and result.size != label_size:
        result.problems.append(_size_problem(image_path, result.size, label_path, label_size))
    return result


def _names(paths: Sequence[Path]) -> str:
    return ", ".join(p.name for p in paths[:_SHOWN]) + (", ..." if len(paths) > _SHOWN else "")


def _kind_notes(split: str, kinds: dict[str, list[Path]]) -> list[str]:
    return [
        f"{len(paths)} image(s) in split '{split}' are {kind}: {_names(paths)}"
        for kind, paths in sorted(kinds.items())
    ]


def _orientation_note(split: str, rotated: Sequence[Path]) -> str:
    return (
        f"{len(rotated)} image(s) in split '{split}' have an EXIF orientation (rotated or "
        f"mirrored when viewed): {_names(rotated)}. They are read as stored, without that "
        "rotation (cv2.imread and image viewers apply it), so their labels must match the "
        "stored pixels; a label drawn on the rotated view is listed as a size mismatch when "
        "its width and height differ."
    )


def crop_note(
    sizes: Iterable[tuple[int, int]],
    crop_size: Sequence[int],
    scale: Sequence[int],
    ratio_range: Sequence[float],
) -> str | None:
    """A note when no training image reaches the crop size even at the largest rescale ratio.

    The random rescale makes each image fit ``scale * ratio`` (long, short) keeping its aspect
    ratio; a crop larger than that is filled by padding (ignored pixels).
    """
    from vanseg.data.transforms import rescale_size

    ratio = max(ratio_range)
    target = (int(max(scale) * ratio), int(min(scale) * ratio))
    crop_h, crop_w = crop_size
    sizes = list(sizes)
    if not sizes:
        return None
    fits = [rescale_size(w, h, target) for w, h in sizes]
    if any(w >= crop_w and h >= crop_h for w, h in fits):
        return None
    largest = max(fits, key=lambda s: s[0] * s[1])
    return (
        f"data.crop_size={list(crop_size)} (H, W) is larger than every training image even at "
        f"the largest rescale ratio {ratio} (at most {largest[0]}x{largest[1]}, WxH): every crop "
        "is padded with ignored pixels. Lower data.crop_size or raise data.scale."
    )


def scan(
    root: str | Path,
    splits: Sequence[str],
    mode: str,
    num_classes: int,
    reduce_zero_label: bool,
    ignore_index: int = IGNORE_INDEX,
    image_suffixes: Sequence[str] = (".jpg",),
    label_suffix: str = ".png",
    workers: int = 0,
    progress: bool = False,
) -> ScanReport:
    """Check the given splits (see the module docstring for ``mode``); never raises on files.

    ``class_pixels`` counts label pixels of the first split (``full`` mode only).
    """
    check_verify_mode(mode)
    report = ScanReport(class_pixels=np.zeros(num_classes, dtype=np.int64))
    probe = partial(
        probe_pair,
        mode=mode,
        num_classes=num_classes,
        reduce_zero_label=reduce_zero_label,
        ignore_index=ignore_index,
    )
    for split in splits:
        try:
            pairs, no_label, no_image, duplicates = scan_split(
                root, split, image_suffixes, label_suffix
            )
        except InputNotFoundError as err:
            report.problems.append(str(err))
            continue
        report.pairs[split] = len(pairs)
        if duplicates:
            report.problems.append(duplicates_message(split, duplicates))
        if no_label or no_image:
            report.problems.append(unpaired_message(split, no_label, no_image))
        if mode == "off":
            continue
        pool = ProcessPoolExecutor(workers) if workers > 0 and len(pairs) > 64 else None
        results = pool.map(probe, pairs, chunksize=32) if pool else map(probe, pairs)
        if progress:
            from rich.progress import track

            results = track(results, total=len(pairs), description=f"checking {split}")
        kinds: dict[str, list[Path]] = defaultdict(list)
        rotated: list[Path] = []
        try:
            for (image_path, _), result in zip(pairs, results, strict=True):
                report.problems.extend(result.problems)
                if result.kind:
                    kinds[result.kind].append(image_path)
                if result.orientation != 1:
                    rotated.append(image_path)
                if split == splits[0] and result.counts is not None:
                    report.class_pixels += result.counts
                if split == splits[0] and result.size is not None:
                    report.first_split_sizes.append(result.size)
        finally:
            if pool is not None:
                pool.shutdown()
        report.notes.extend(_kind_notes(split, kinds))
        if rotated:
            report.notes.append(_orientation_note(split, rotated))
    return report


def problems_message(root: str | Path, mode: str, report: ScanReport) -> str:
    """The error message listing every problem of a failed scan."""
    return (
        f"The dataset at {root} has {len(report.problems)} problem(s), found before training "
        f"by data.verify={mode}:\n"
        + "\n".join(f"- {p}" for p in report.problems)
        + "\nFix or remove the files listed (every problem is listed, not only the first), "
        "then run again; `python -m vanseg.data.check data=...` checks the whole dataset."
    )
