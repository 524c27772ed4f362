"""ADE20K-layout segmentation dataset: file discovery, image/label loading and validation.

The layout is the one of ``ADEChallengeData2016`` (SceneParse150)::

    <root>/images/{training,validation}/<name>.jpg
    <root>/annotations/{training,validation}/<name>.png

Custom datasets, and the generated one (`vanseg.data.synthetic`), use the same layout. Labels
are single-channel PNGs read as class indices with PIL (grayscale or palette mode), never as
colours. ``reduce_zero_label`` (0 -> ignore, k -> k-1) is applied here, once, at load time
(docs/pitfalls.md D1); every later step sees labels in ``{0..K-1, ignore_index}``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from vanseg.data.classes import ADE20K_NUM_CLASSES, IGNORE_INDEX
from vanseg.data.image_io import pil_to_rgb, read_rgb
from vanseg.errors import DatasetError, InputNotFoundError

__all__ = [
    "ADE20KDataset",
    "PairTransform",
    "SplitFiles",
    "duplicates_message",
    "find_pairs",
    "image_to_rgb",
    "layout_help",
    "load_image",
    "load_label",
    "reason",
    "reduce_zero_label",
    "scan_split",
]

#: Label image modes that hold one class index per pixel.
INDEX_MODES = frozenset({"L", "P", "I", "I;16", "1"})
#: How many names an error message lists before "...".
_SHOWN = 5


class PairTransform(Protocol):
    """Joint image/label transform used by `ADE20KDataset`.

    Called as ``transform(image, mask, seed)`` with an RGB ``uint8`` image ``(H, W, 3)``, a
    ``uint8`` label ``(H, W)`` and an optional per-sample seed; returns ``(image, mask)``.
    """

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, seed: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...


def layout_help(root: str | Path) -> str:
    """The explanation appended to every "dataset not found" error."""
    return (
        f"Expected the ADEChallengeData2016 layout under {root}:\n"
        "    images/training/*.jpg        annotations/training/*.png\n"
        "    images/validation/*.jpg      annotations/validation/*.png\n"
        "Download ADE20K with `python -m vanseg.data.download ade20k --root data/ade` (then "
        "data.root=data/ade/ADEChallengeData2016), point data.root= at your copy, or try the "
        "whole pipeline without a download on generated data with `data=synthetic`."
    )


def reason(err: BaseException) -> str:
    """An exception's message without its final full stop, to go inside a sentence."""
    return str(err).rstrip(". ")


def _shown(names: Sequence[str]) -> str:
    head = ", ".join(names[:_SHOWN])
    return head + (", ..." if len(names) > _SHOWN else "")


class SplitFiles(NamedTuple):
    """The files of one split, by name (stem), each list sorted."""

    pairs: list[tuple[Path, Path]]  # one image and one label of the same name
    no_label: list[Path]  # images whose name has no label
    no_image: list[Path]  # labels whose name has no image
    duplicates: list[list[Path]]  # files sharing a name in one folder: no pair is made of them


def _by_stem(paths: Iterable[Path]) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(paths):
        files[path.stem].append(path)
    return files


def scan_split(
    root: str | Path,
    split: str,
    image_suffixes: Sequence[str] = (".jpg",),
    label_suffix: str = ".png",
) -> SplitFiles:
    """List one split: pairs, images without label, labels without image, and duplicate names.

    Two images (or two labels) with one name, such as ``x.jpg`` and ``x.png``, are both listed
    in ``duplicates`` and paired with nothing: which one to use is the user's choice.

    Raises:
        InputNotFoundError: The root or a split folder is missing, or the split is empty.
    """
    root = Path(root).expanduser()
    image_dir, label_dir = root / "images" / split, root / "annotations" / split
    missing = [str(d) for d in (image_dir, label_dir) if not d.is_dir()]
    if missing:
        if root.is_dir():
            what = f"{root.resolve()} is missing {', '.join(missing)}"
        else:
            what = f"{root.absolute()} does not exist"
        raise InputNotFoundError(f"Dataset not found: {what}.\n{layout_help(root)}")
    suffixes = {s.lower() for s in image_suffixes}
    images = _by_stem(p for p in image_dir.iterdir() if p.suffix.lower() in suffixes)
    labels = _by_stem(p for p in label_dir.iterdir() if p.suffix.lower() == label_suffix.lower())
    if not images and not labels:
        raise InputNotFoundError(
            f"Dataset split '{split}' is empty: no {'/'.join(sorted(suffixes))} files in "
            f"{image_dir} and no {label_suffix} files in {label_dir}.\n{layout_help(root)}"
        )
    duplicates = [
        files for found in (images, labels) for _, files in sorted(found.items()) if len(files) > 1
    ]
    pairs = [
        (images[stem][0], labels[stem][0])
        for stem in sorted(images.keys() & labels.keys())
        if len(images[stem]) == len(labels[stem]) == 1
    ]
    no_label = [p for stem in sorted(images.keys() - labels.keys()) for p in images[stem]]
    no_image = [p for stem in sorted(labels.keys() - images.keys()) for p in labels[stem]]
    return SplitFiles(pairs, no_label, no_image, duplicates)


def duplicates_message(split: str, duplicates: Sequence[Sequence[Path]]) -> str:
    """Describe files that share a name in one folder, in one line."""
    groups = [f"{', '.join(p.name for p in files)} in {files[0].parent}" for files in duplicates]
    shown = "; ".join(groups[:_SHOWN]) + ("; ..." if len(groups) > _SHOWN else "")
    return (
        f"Duplicate names in split '{split}': {len(groups)} name(s) have more than one image or "
        f"more than one label, so none of them is used: {shown}. Keep one image and one label "
        "per name (delete or rename the others)."
    )


def unpaired_message(split: str, no_label: Sequence[Path], no_image: Sequence[Path]) -> str:
    """Describe unpaired files with their count and the first few names."""
    parts = []
    if no_label:
        parts.append(
            f"{len(no_label)} image(s) in {no_label[0].parent} have no label in the annotations "
            f"folder: {_shown([p.name for p in no_label])}"
        )
    if no_image:
        parts.append(
            f"{len(no_image)} label(s) in {no_image[0].parent} have no image in the images "
            f"folder: {_shown([p.name for p in no_image])}"
        )
    return (
        f"Unpaired files in split '{split}':\n  "
        + "\n  ".join(parts)
        + "\nEvery image needs a label with the same name (and vice versa); add or remove the "
        "files listed. `python -m vanseg.data.check data=...` lists every problem at once."
    )


def find_pairs(
    root: str | Path,
    split: str,
    image_suffixes: Sequence[str] = (".jpg",),
    label_suffix: str = ".png",
) -> list[tuple[Path, Path]]:
    """List the ``(image, label)`` files of one split, sorted by name.

    Sorting makes every rank and every run see the same order (docs/pitfalls.md B4).

    Raises:
        InputNotFoundError: The root or a split folder is missing, or the split is empty.
        DatasetError: Some images have no label, some labels have no image, or two images (or
            two labels) share a name.
    """
    pairs, no_label, no_image, duplicates = scan_split(root, split, image_suffixes, label_suffix)
    problems = [duplicates_message(split, duplicates)] if duplicates else []
    if no_label or no_image:
        problems.append(unpaired_message(split, no_label, no_image))
    if problems:
        raise DatasetError("\n".join(problems))
    return pairs


def image_to_rgb(img: Image.Image) -> np.ndarray:
    """An in-memory PIL image as RGB ``uint8`` ``(H, W, 3)``, read as :func:`load_image` reads."""
    return pil_to_rgb(img)


def load_image(path: str | Path) -> np.ndarray:
    """Read an image as RGB ``uint8`` ``(H, W, 3)`` as the original does, at any bit depth.

    See `vanseg.data.image_io.read_rgb`: 16-bit, grayscale, RGBA and palette images give what
    OpenCV's ``IMREAD_COLOR`` gives (no EXIF rotation, docs/pitfalls.md D3).

    Raises:
        DatasetError: The file is unreadable or corrupt; the message names the file.
    """
    try:
        return read_rgb(path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DatasetError(
            f"Cannot read image {path}: {reason(err)}. Replace or delete the file (and its label); "
            "corrupt files are never skipped silently."
        ) from err


def reduce_zero_label(label: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Map raw label 0 ("other") to ``ignore_index`` and ``k`` to ``k - 1``.

    A raw ``ignore_index`` stays ignored, as in mmseg (0 -> 255, 255 -> 254 -> 255). Apply it
    exactly once (docs/pitfalls.md D1).

    Args:
        label: Integer label map ``(H, W)``.
        ignore_index: Value of ignored pixels.

    Returns:
        A new ``int32`` label map.
    """
    raw = label.astype(np.int32)
    out = raw - 1
    out[(raw == 0) | (raw == ignore_index)] = ignore_index
    return out


def load_label(
    path: str | Path,
    num_classes: int,
    reduce_zero: bool,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """Read a label PNG as class indices, reduce it if asked, and validate its values.

    Palette PNGs give their indices (``np.asarray`` on the PIL image, never ``convert``),
    grayscale PNGs their gray values (docs/pitfalls.md D2).

    Args:
        path: Label file.
        num_classes: Number of classes K; valid values are ``0..K-1`` and ``ignore_index``.
        reduce_zero: Apply `reduce_zero_label` (ADE20K: raw 0 is "other").
        ignore_index: Value of ignored pixels (at most 255: labels are kept as ``uint8``).

    Returns:
        ``uint8`` label ``(H, W)``.

    Raises:
        DatasetError: Unreadable file, a colour (RGB/RGBA) label, or out-of-range values.
    """
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode not in INDEX_MODES:
                colours = np.unique(np.asarray(img.convert("RGB")).reshape(-1, 3), axis=0)
                raise DatasetError(
                    f"Label {path} is a {mode}-mode image (colours such as "
                    f"{[tuple(int(v) for v in c) for c in colours[:_SHOWN]]}); labels must be "
                    "single-channel class indices (grayscale 'L' or palette 'P' PNG). Convert "
                    "colour masks to index PNGs, one value per class."
                )
            raw = np.asarray(img)
    except DatasetError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DatasetError(
            f"Cannot read label {path}: {reason(err)}. Replace or delete it."
        ) from err
    label = reduce_zero_label(raw, ignore_index) if reduce_zero else raw.astype(np.int32)
    bad = ((label >= num_classes) & (label != ignore_index)) | (label < 0)
    if bad.any():
        values = np.unique(label[bad])
        hint = (
            "reduce_zero_label=true maps raw 0 to ignore and k to k-1, so raw values must be "
            f"in 0..{num_classes}"
            if reduce_zero
            else f"values must be in 0..{num_classes - 1} or {ignore_index} (ignore)"
        )
        raise DatasetError(
            f"Label {path} has values outside {{0..{num_classes - 1}, {ignore_index}}} after "
            f"reduce_zero_label={reduce_zero}: {values[:10].tolist()} "
            f"({int(bad.sum())} pixels). {hint}. Check data.num_classes and "
            "data.reduce_zero_label."
        )
    return label.astype(np.uint8)


class ADE20KDataset(Dataset):
    """One split of an ADE20K-layout dataset.

    Items are dicts ``{"image": float32 (3, H, W), "mask": int64 (H, W), "name": str}``,
    ``255`` (``ignore_index``) marking ignored pixels. With a training transform image and mask
    are aligned crops; with the evaluation transform the image is resized and the mask stays at
    the original resolution (docs/pitfalls.md C1).

    An item key is an index, or ``(index, seed)`` as yielded by `vanseg.data.sampler.
    InfiniteSampler`, so that random augmentation depends only on the seed.

    Args:
        root: Dataset folder holding ``images/`` and ``annotations/``.
        split: Sub-folder name, ``"training"`` or ``"validation"``.
        num_classes: Number of classes K after reduction.
        reduce_zero_label: Map raw 0 to ignore and k to k-1 (ADE20K: true).
        ignore_index: Label of ignored pixels (at most 255).
        transform: Joint transform; ``None`` returns the unnormalised image as float32.
        image_suffixes: Image file extensions to list.
        label_suffix: Label file extension.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "training",
        *,
        num_classes: int = ADE20K_NUM_CLASSES,
        reduce_zero_label: bool = True,
        ignore_index: int = IGNORE_INDEX,
        transform: PairTransform | None = None,
        image_suffixes: Sequence[str] = (".jpg",),
        label_suffix: str = ".png",
    ) -> None:
        if not 0 < num_classes <= ignore_index <= 255:
            raise ValueError(
                f"Need 0 < num_classes ({num_classes}) <= ignore_index ({ignore_index}) <= 255: "
                "labels are stored as uint8."
            )
        self.root = Path(root).expanduser()
        self.split = split
        self.num_classes = num_classes
        self.reduce_zero_label = reduce_zero_label
        self.ignore_index = ignore_index
        self.transform = transform
        self.pairs = find_pairs(self.root, split, image_suffixes, label_suffix)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def names(self) -> list[str]:
        """File stems in dataset order."""
        return [image.stem for image, _ in self.pairs]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read one validated pair: RGB ``uint8`` ``(H, W, 3)`` and ``uint8`` label ``(H, W)``.

        Raises:
            DatasetError: Unreadable files, invalid labels, or image/label size mismatch.
        """
        image_path, label_path = self.pairs[index]
        image = load_image(image_path)
        label = load_label(label_path, self.num_classes, self.reduce_zero_label, self.ignore_index)
        if image.shape[:2] != label.shape:
            raise DatasetError(
                f"Image {image_path} is {image.shape[1]}x{image.shape[0]} (WxH) but its label "
                f"{label_path} is {label.shape[1]}x{label.shape[0]}; they must be the same size."
            )
        return image, label

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | str]:
        if isinstance(key, (tuple, list)):
            index, seed = int(key[0]), int(key[1])
        else:
            index, seed = int(key), None
        image, mask = self.load(index)
        if self.transform is not None:
            image, mask = self.transform(image, mask, seed)
        image_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), np.float32))
        return {
            "image": image_t,  # (3, H, W)
            "mask": torch.from_numpy(mask.astype(np.int64)),  # (H, W); original size for eval
            "name": self.pairs[index][0].stem,
        }
