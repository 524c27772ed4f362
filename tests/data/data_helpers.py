"""Helpers shared by the data tests (imported as ``data_helpers``)."""

from __future__ import annotations

import numpy as np

from vanseg.data.synthetic import SyntheticSpec

#: A small generated dataset: quick to write, still non-square sizes not multiple of 32.
SMALL_SPEC = SyntheticSpec(num_classes=6, num_train=6, num_val=3, min_side=150, max_side=300)


def encoded_pair(
    height: int, width: int, num_classes: int, block: int = 32, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """An image whose colour encodes its label, on a random grid of ``block``-pixel squares.

    Label ``l`` has colour `label_color` ``(l)``; about 10% of the squares are 255 (ignore).
    The layout is asymmetric, so flipping one but not the other would show.
    """
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, num_classes, size=(-(-height // block), -(-width // block)))
    grid[rng.random(grid.shape) < 0.1] = 255
    label = np.kron(grid, np.ones((block, block), dtype=np.int64))[:height, :width]
    label = label.astype(np.uint8)
    return label_color(label), label


def label_color(label: np.ndarray) -> np.ndarray:
    """Colour code of a label map, distinct for every value in 0..255 (blue = the label)."""
    lab = label.astype(np.int64)
    return np.stack([(lab * 37 + 11) % 256, (lab * 101 + 60) % 256, lab], axis=-1).astype(np.uint8)
