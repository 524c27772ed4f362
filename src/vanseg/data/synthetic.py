"""A generated dataset in the ADEChallengeData2016 layout, for offline runs, CI and tutorials.

`ensure_synthetic_dataset` writes it once into a cache folder and reuses it afterwards; the
regular ADE20K code then reads it like the real thing::

    <cache_dir>/synthetic-<key>/ADEChallengeData2016/images/{training,validation}/*.jpg
    <cache_dir>/synthetic-<key>/ADEChallengeData2016/annotations/{training,validation}/*.png

Labels follow ADE20K: 0 is "unlabelled" (ignored after ``reduce_zero_label``) and classes are
``1..num_classes``. Each class has a fixed texture (stripes, checks, dots, rings, blotches or
grain) in a pair of colours shared with another class, so colour alone does not identify it;
instances vary colour, scale, orientation and phase. Scenes have 1-3 background regions with
wavy borders and several shapes of widely varying size; thin unlabelled bands around some
shapes and unlabelled clutter blobs exercise the ignore label. Image sizes are non-square and
never multiples of 32, so rescale, crop, ``cat_max_ratio``, padding and original-resolution
evaluation are all exercised.

Generation is deterministic (same spec, same bytes) and atomic: files go to a temporary folder
that is renamed into place with a manifest, so a half-written cache is never used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vanseg.data.synthetic_render import render_scene, synthetic_class_names

__all__ = [
    "SYNTHETIC_NUM_CLASSES",
    "SyntheticSpec",
    "default_cache_dir",
    "ensure_synthetic_dataset",
    "render_scene",
    "synthetic_class_names",
    "synthetic_root",
]

#: Classes of the generated dataset (textures), the default of its ``num_classes``.
SYNTHETIC_NUM_CLASSES = 8

#: Bump when the drawing code changes, so older caches are not mistaken for the new ones.
GENERATOR_VERSION = 2
MANIFEST = "vanseg_synthetic.json"


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate.

    Args:
        num_classes: Number of classes K (labels ``1..K``; 0 is unlabelled).
        num_train: Training images.
        num_val: Validation images.
        min_side: Smallest image side in pixels (sides may be nudged down by up to 3 px so that
            images are never square nor a multiple of 32).
        max_side: Largest image side in pixels.
        seed: Seed of the whole dataset.
    """

    num_classes: int = SYNTHETIC_NUM_CLASSES
    num_train: int = 200
    num_val: int = 50
    min_side: int = 240
    max_side: int = 640
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.num_classes <= 254:
            raise ValueError(f"num_classes must be in 2..254, got {self.num_classes}")
        if self.num_train < 1 or self.num_val < 1:
            raise ValueError("num_train and num_val must be at least 1")
        if not 48 <= self.min_side < self.max_side:
            raise ValueError(
                f"need 48 <= min_side < max_side, got {self.min_side}, {self.max_side}"
            )

    def key(self) -> str:
        """Short, stable identifier of the spec and the generator version."""
        payload = json.dumps({**dataclasses.asdict(self), "version": GENERATOR_VERSION})
        digest = hashlib.sha1(payload.encode(), usedforsecurity=False).hexdigest()[:10]
        return f"c{self.num_classes}-t{self.num_train}-v{self.num_val}-{digest}"


def default_cache_dir() -> Path:
    """``$VANSEG_CACHE_DIR``, else ``$XDG_CACHE_HOME/vanseg``, else ``~/.cache/vanseg``."""
    if os.environ.get("VANSEG_CACHE_DIR"):
        return Path(os.environ["VANSEG_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "vanseg"


def synthetic_root(cache_dir: str | Path | None, spec: SyntheticSpec) -> Path:
    """Dataset root (the ``ADEChallengeData2016`` folder) for ``spec`` under ``cache_dir``."""
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return base / f"synthetic-{spec.key()}" / "ADEChallengeData2016"


def _image_size(spec: SyntheticSpec, rng: np.random.Generator) -> tuple[int, int]:
    """Random ``(w, h)``, never square and never a multiple of 32 (nudged down by <= 3 px)."""
    width, height = (int(v) for v in rng.integers(spec.min_side, spec.max_side + 1, size=2))
    width -= width % 32 == 0
    height -= height % 32 == 0
    while width == height or width % 32 == 0:
        width -= 1
    return width, height


def _write_split(root: Path, split: str, count: int, spec: SyntheticSpec) -> None:
    prefix = {"training": "train", "validation": "val"}[split]
    image_dir, label_dir = root / "images" / split, root / "annotations" / split
    image_dir.mkdir(parents=True)
    label_dir.mkdir(parents=True)
    split_id = 0 if split == "training" else 1
    for i in range(count):
        rng = np.random.default_rng([spec.seed, split_id, i])
        width, height = _image_size(spec, rng)
        image, label = render_scene(width, height, spec.num_classes, rng, spec.seed)
        name = f"SYN_{prefix}_{i + 1:08d}"
        Image.fromarray(image).save(image_dir / f"{name}.jpg", quality=92)
        Image.fromarray(label).save(label_dir / f"{name}.png")


def _read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def ensure_synthetic_dataset(
    spec: SyntheticSpec = SyntheticSpec(), cache_dir: str | Path | None = None
) -> Path:
    """Generate the dataset for ``spec`` unless the cache holds a complete copy; return its root.

    Safe to call from several processes: each writes a private temporary folder and renames it
    into place; the loser of a race discards its copy.

    Returns:
        The ``ADEChallengeData2016`` folder, ready for `vanseg.data.ADE20KDataset`.
    """
    root = synthetic_root(cache_dir, spec)
    expected = {"spec": dataclasses.asdict(spec), "version": GENERATOR_VERSION}
    manifest = _read_manifest(root)
    if manifest is not None:
        if {k: manifest.get(k) for k in expected} != expected:
            raise RuntimeError(
                f"{root} holds a different synthetic dataset than requested ({manifest}); "
                f"delete {root.parent} to regenerate it."
            )
        return root
    final = root.parent
    if final.exists():
        # No manifest: an interrupted copy from a generator that did not rename atomically.
        raise RuntimeError(f"{final} exists but is incomplete (no {MANIFEST}); delete it.")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        tmp_root = tmp / root.name
        start = time.perf_counter()
        _write_split(tmp_root, "training", spec.num_train, spec)
        _write_split(tmp_root, "validation", spec.num_val, spec)
        seconds = time.perf_counter() - start
        (tmp_root / MANIFEST).write_text(json.dumps({**expected, "seconds": seconds}, indent=1))
        try:
            tmp.rename(final)
        except OSError:
            if _read_manifest(root) is None:  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
