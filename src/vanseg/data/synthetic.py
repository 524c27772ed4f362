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

import cv2
import numpy as np
from PIL import Image

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
TEXTURES = ("stripes", "checks", "dots", "rings", "blotches", "grain")


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


def synthetic_class_names(num_classes: int) -> tuple[str, ...]:
    """Names ``<texture>_<k>`` for the generated classes, in label order (raw label k + 1)."""
    return tuple(f"{TEXTURES[k % len(TEXTURES)]}_{k}" for k in range(num_classes))


# ---------------------------------------------------------------------------------------------
# Drawing


@dataclass(frozen=True)
class _ClassStyle:
    texture: str
    colors: np.ndarray  # (2, 3) float32 RGB
    period: float
    angle: float


def _class_styles(num_classes: int, seed: int) -> list[_ClassStyle]:
    rng = np.random.default_rng([seed, 7919])
    styles = []
    for k in range(num_classes):
        # Classes k and k + 1 (k even) share a hue: their textures tell them apart.
        hue = ((k // 2) * 0.618034 + 0.1) % 1.0
        base = _hsv_to_rgb(hue, 0.65, 0.85)
        dark = _hsv_to_rgb((hue + 0.08) % 1.0, 0.8, 0.35)
        styles.append(
            _ClassStyle(
                texture=TEXTURES[k % len(TEXTURES)],
                colors=np.stack([dark, base]).astype(np.float32),
                period=float(rng.uniform(6, 18)),
                angle=float(rng.uniform(0, np.pi)),
            )
        )
    return styles


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    hsv = np.array([[[h * 180, s * 255, v * 255]]], dtype=np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _pattern(style: _ClassStyle, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Texture intensity in [0, 1], ``(height, width)`` float32, with per-instance variation."""
    period = style.period * rng.uniform(0.8, 1.25)
    angle = style.angle + rng.uniform(-0.25, 0.25)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy += rng.uniform(0, 100)
    xx += rng.uniform(0, 100)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    if style.texture == "stripes":
        return 0.5 + 0.5 * np.sin(u * (2 * np.pi / period))
    if style.texture == "checks":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if style.texture == "dots":
        wave = np.sin(u * (2 * np.pi / period)) * np.sin(v * (2 * np.pi / period))
        return (wave > 0.35).astype(np.float32)
    if style.texture == "rings":
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = np.sqrt((yy - yy.min() - cy) ** 2 + (xx - xx.min() - cx) ** 2)
        return 0.5 + 0.5 * np.sign(np.sin(radius * (2 * np.pi / period)))
    if style.texture == "blotches":
        small = rng.random((max(2, int(height / period) + 2), max(2, int(width / period) + 2)))
        field = cv2.resize(small.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
        return (field > 0.5).astype(np.float32) * 0.8 + 0.1
    # grain: fine noise around the mid colour
    return np.clip(0.5 + 0.3 * rng.standard_normal((height, width)), 0, 1).astype(np.float32)


def _paint(
    image: np.ndarray,
    region: np.ndarray,
    style: _ClassStyle,
    rng: np.random.Generator,
) -> None:
    """Fill ``region`` (bool mask) of ``image`` (float32 RGB) with the class texture."""
    x0, y0, width, height = cv2.boundingRect(region.view(np.uint8))
    if width == 0 or height == 0:
        return
    pattern = _pattern(style, height, width, rng)[..., None]
    jitter = rng.uniform(-18, 18, size=3).astype(np.float32)
    colors = style.colors + jitter
    texture = colors[0] * (1 - pattern) + colors[1] * pattern
    box = (slice(y0, y0 + height), slice(x0, x0 + width))
    np.copyto(image[box], texture, where=region[box][..., None])


def _wavy_regions(height: int, width: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Split the image into ``count`` bands along a random axis with wavy borders."""
    vertical = rng.random() < 0.3
    length, depth = (width, height) if not vertical else (height, width)
    t = np.arange(length, dtype=np.float32)
    borders = np.sort(rng.uniform(0.2, 0.8, size=count - 1)) * depth
    region = np.zeros((depth, length), dtype=np.int32)
    coord = np.arange(depth, dtype=np.float32)[:, None]
    for border in borders:
        amp, freq, phase = rng.uniform(3, depth / 10), rng.uniform(0.5, 4), rng.uniform(0, 6.3)
        line = border + amp * np.sin(t * freq * 2 * np.pi / length + phase)
        region += coord > line[None, :]
    return region.T if vertical else region


def _shape_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """One random ellipse, rotated rectangle or polygon of log-uniform size, as a bool mask."""
    short = min(height, width)
    size = float(np.exp(rng.uniform(np.log(0.05 * short), np.log(0.6 * short))))
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    canvas = np.zeros((height, width), dtype=np.uint8)
    kind = rng.integers(3)
    if kind == 0:
        axes = (max(2, int(size / 2)), max(2, int(size / 2 * rng.uniform(0.4, 1.0))))
        cv2.ellipse(canvas, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif kind == 1:
        rect = ((cx, cy), (size, size * rng.uniform(0.3, 1.0)), float(rng.uniform(0, 90)))
        cv2.fillPoly(canvas, [cv2.boxPoints(rect).astype(np.int32)], 1)
    else:
        n = int(rng.integers(3, 7))
        angles = np.sort(rng.uniform(0, 2 * np.pi, size=n))
        radii = size / 2 * rng.uniform(0.5, 1.0, size=n)
        points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        cv2.fillPoly(canvas, [points.astype(np.int32)], 1)
    return canvas.astype(bool)


def render_scene(
    width: int, height: int, num_classes: int, rng: np.random.Generator, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one scene.

    Args:
        width: Image width.
        height: Image height.
        num_classes: Number of classes K.
        rng: Source of this scene's randomness.
        seed: Dataset seed, which fixes the class textures and colours.

    Returns:
        RGB ``uint8`` image ``(H, W, 3)`` and ``uint8`` label ``(H, W)`` in ``0..K``
        (0 = unlabelled).
    """
    styles = _class_styles(num_classes, seed)
    image = np.zeros((height, width, 3), dtype=np.float32)
    label = np.zeros((height, width), dtype=np.uint8)

    regions = _wavy_regions(height, width, int(rng.integers(1, 4)), rng)
    for r in np.unique(regions):
        k = int(rng.integers(num_classes))
        _paint(image, regions == r, styles[k], rng)
        label[regions == r] = k + 1

    for _ in range(int(rng.integers(2, 8))):
        shape = _shape_mask(height, width, rng)
        k = int(rng.integers(num_classes))
        _paint(image, shape, styles[k], rng)
        label[shape] = k + 1
        if rng.random() < 0.4:  # thin unlabelled outline, like ADE20K's object borders
            outline = cv2.morphologyEx(shape.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3)))
            label[outline.astype(bool)] = 0

    if rng.random() < 0.5:  # unlabelled clutter with its own, class-free look
        clutter = _shape_mask(height, width, rng)
        noise = rng.uniform(40, 220, size=(height, width, 1)).astype(np.float32)
        image[clutter] = noise[clutter]
        label[clutter] = 0

    # Smooth lighting gradient and sensor noise, so no class has one exact colour.
    gx, gy = rng.uniform(-0.25, 0.25, size=2)
    xs = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    ys = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    light = 1.0 + gx * xs + gy * ys
    image *= light[..., None]
    image += 4 * rng.standard_normal(image.shape, dtype=np.float32)
    image = cv2.GaussianBlur(np.clip(image, 0, 255).astype(np.uint8), (3, 3), 0)
    return image, label


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
