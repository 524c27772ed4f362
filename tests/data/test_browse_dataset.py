"""`python -m vanseg.tools.browse_dataset`: a grid of augmented samples with label overlays."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.data.data_helpers import SMALL_SPEC
from vanseg.tools.browse_dataset import main, overlay


def test_overlay_blends_labels_and_leaves_ignored_pixels():
    image = np.full((1, 3, 3), 100, np.uint8)
    mask = np.array([[0, 1, 255]], np.uint8)
    out = overlay(image, mask, [(0, 0, 0), (200, 0, 0)], ignore_index=255, alpha=0.5)
    np.testing.assert_array_equal(out, [[[50, 50, 50], [150, 50, 50], [100, 100, 100]]])


def test_writes_a_grid_for_the_generated_dataset(synthetic_cache, tmp_path):
    out = tmp_path / "grid" / "samples.png"
    spec = SMALL_SPEC
    main(
        [
            "data=synthetic",
            f"data.cache_dir={synthetic_cache}",
            f"data.num_train={spec.num_train}",
            f"data.num_val={spec.num_val}",
            f"data.min_side={spec.min_side}",
            f"data.max_side={spec.max_side}",
            f"data.num_classes={spec.num_classes}",
            "n=3",
            "cols=2",
            "tile=32",
            f"out={out}",
        ]
    )
    grid = np.asarray(Image.open(out))
    # 2 columns of (image | overlay) cells 64 px wide, 2 rows of 32 px, 2-pixel gaps
    assert grid.shape == (2 * 34, 2 * 66, 3)
    assert (grid[34:, 66:] == 255).all()  # the 4th cell is empty
    left, right = grid[:32, :32].astype(int), grid[:32, 32:64].astype(int)
    assert np.abs(left - right).mean() > 5  # the overlay differs from the image
