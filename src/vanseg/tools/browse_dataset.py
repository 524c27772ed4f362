"""Write a grid of augmented training samples with their labels overlaid in the dataset palette.

    python -m vanseg.tools.browse_dataset data=synthetic n=16 out=samples.png

Shows exactly what the model sees: the training pipeline's crops (rescaled, cropped, flipped,
colour-distorted, padded), de-normalised for display, each beside its label blended over it in
the dataset palette; ignored pixels (label 255, including padding) are left unblended. Tool options
``n`` (samples), ``out`` (PNG path), ``cols`` (grid columns), ``tile`` (panel width in pixels) and
``alpha`` (overlay opacity) sit beside any Hydra overrides.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from vanseg.utils.atomic import atomic_path
from vanseg.utils.cli import split_overrides, tool_parser, user_errors

__all__ = ["main", "overlay", "render_grid"]

#: The command as users type it: starts every usage and error line.
PROG = "python -m vanseg.tools.browse_dataset"


def _flag(value: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no) as a bool; anything else is a ValueError."""
    lowered = value.lower()
    if lowered not in ("1", "true", "yes", "0", "false", "no"):
        raise ValueError(value)
    return lowered in ("1", "true", "yes")


#: Tool option -> (parser, what the value must be); other ``key=value`` are Hydra overrides.
_OPTIONS = {
    "n": (int, "an integer"),
    "out": (str, "a path"),
    "cols": (int, "an integer"),
    "tile": (int, "an integer"),
    "alpha": (float, "a number"),
    "overwrite": (_flag, "true or false"),
}


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    palette: Sequence[Sequence[int]],
    ignore_index: int,
    alpha: float = 0.5,
) -> np.ndarray:
    """Blend label colours over an RGB uint8 image; ``ignore_index`` pixels stay as they are."""
    colors = np.zeros((256, 3), dtype=np.float32)
    colors[: len(palette)] = np.asarray(palette, dtype=np.float32)
    blended = image.astype(np.float32) * (1 - alpha) + colors[mask] * alpha
    keep = (mask == ignore_index)[..., None]
    return np.where(keep, image, blended.round().astype(np.uint8))


def render_grid(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    palette: Sequence[Sequence[int]],
    mean: Sequence[float],
    std: Sequence[float],
    ignore_index: int,
    cols: int = 4,
    tile: int = 192,
    alpha: float = 0.6,
) -> np.ndarray:
    """Grid of (image, overlay) pairs from normalised ``(3, H, W)`` images and ``(H, W)`` masks.

    Returns:
        RGB uint8 array; each cell is the de-normalised image beside its label overlay, each
        panel ``tile`` pixels wide, cells separated by a 2-pixel white gap.
    """
    tiles = []
    for image, mask in zip(images, masks, strict=True):
        rgb = image.transpose(1, 2, 0) * np.asarray(std) + np.asarray(mean)
        rgb = np.clip(rgb, 0, 255).round().astype(np.uint8)
        shown = np.concatenate(
            [rgb, overlay(rgb, mask.astype(np.uint8), palette, ignore_index, alpha)], axis=1
        )
        height = max(1, round(2 * tile * shown.shape[0] / shown.shape[1]))
        tiles.append(cv2.resize(shown, (2 * tile, height), interpolation=cv2.INTER_AREA))
    rows = -(-len(tiles) // cols)
    cell_h = max(t.shape[0] for t in tiles)
    cell_w = 2 * tile
    grid = np.full((rows * (cell_h + 2), cols * (cell_w + 2), 3), 255, dtype=np.uint8)
    for i, t in enumerate(tiles):
        y, x = (i // cols) * (cell_h + 2), (i % cols) * (cell_w + 2)
        grid[y : y + t.shape[0], x : x + cell_w] = t
    return grid


@user_errors(PROG)
def main(argv: Sequence[str] | None = None) -> Path:
    """Parse ``key=value`` options and Hydra overrides, write the grid, return its path."""
    from hydra.utils import instantiate

    from vanseg.config.compose import compose_config
    from vanseg.data.sampler import InfiniteSampler

    parser = tool_parser(PROG, __doc__)
    _, args = split_overrides(parser, argv)
    options = {"n": 16, "out": "samples.png", "cols": 4, "tile": 192, "alpha": 0.6}
    options["overwrite"] = False
    overrides = []
    for arg in args:
        key, _, value = arg.partition("=")
        if key not in _OPTIONS:
            overrides.append(arg)
            continue
        parse, what = _OPTIONS[key]
        try:
            options[key] = parse(value)
        except ValueError:
            parser.error(f"{arg}: {key} must be {what}")

    cfg = compose_config(overrides)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    dataset = datamodule.datasets["train"]
    # The same stream training starts with on rank 0.
    sampler = InfiniteSampler(len(dataset), datamodule.seed, rank=0, world_size=1)
    samples = [dataset[sampler.item(k)] for k in range(options["n"])]
    grid = render_grid(
        [s["image"].numpy() for s in samples],
        [s["mask"].numpy() for s in samples],
        datamodule.palette,
        datamodule.train_transform.mean,
        datamodule.train_transform.std,
        datamodule.ignore_index,
        options["cols"],
        options["tile"],
        options["alpha"],
    )
    out = Path(options["out"])
    with atomic_path(out, overwrite=options["overwrite"]) as tmp:
        Image.fromarray(grid).save(
            tmp, format=Image.registered_extensions().get(out.suffix.lower())
        )
    print(f"wrote {len(samples)} {datamodule.name} training samples to {out}")
    return out


if __name__ == "__main__":
    main()
