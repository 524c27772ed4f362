"""Drawing of the generated dataset's scenes: textured regions and shapes, unlabelled bands.

Used by `vanseg.data.synthetic` (which caches the dataset) and the data benchmark. Each class
has a fixed texture in a pair of colours shared with another class; see the module docstring of
`vanseg.data.synthetic` for what the scenes exercise. Deterministic for a given generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["TEXTURES", "render_scene", "synthetic_class_names"]

#: Class textures, in label order (cycled when there are more classes).
TEXTURES = ("stripes", "checks", "dots", "rings", "blotches", "grain")


def synthetic_class_names(num_classes: int) -> tuple[str, ...]:
    """Names ``<texture>_<k>`` for the generated classes, in label order (raw label k + 1)."""
    return tuple(f"{TEXTURES[k % len(TEXTURES)]}_{k}" for k in range(num_classes))


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
