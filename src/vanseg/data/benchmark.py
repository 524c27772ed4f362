"""Throughput of the training data path in one process, in images per second.

    python -m vanseg.data.benchmark [--images 100] [--width 683] [--height 512]

Writes ADE-sized JPEG/PNG pairs (683x512, like most ADE20K images) into a temporary folder,
then times one worker's work per sample: JPEG/PNG decoding plus the full training transform
(`ADE20KDataset.__getitem__`), and the transform alone. A DataLoader with ``num_workers=N``
runs N such processes in parallel.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from vanseg.data.ade20k import ADE20KDataset
from vanseg.data.classes import ADE20K_NUM_CLASSES
from vanseg.data.synthetic import render_scene
from vanseg.data.transforms import TrainTransform
from vanseg.utils.cli import tool_parser, user_errors

__all__ = ["benchmark", "main"]

#: The command as users type it: starts every usage and error line.
PROG = "python -m vanseg.data.benchmark"


def benchmark(images: int = 100, width: int = 683, height: int = 512, repeats: int = 2) -> dict:
    """Time decoding + training transform and the transform alone.

    Returns:
        ``{"load_and_transform": img/s, "transform_only": img/s}`` (best of ``repeats``).
    """
    cv2.setNumThreads(1)  # what a DataLoader worker gets: one core each
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for split in ("training", "validation"):
            (root / "images" / split).mkdir(parents=True)
            (root / "annotations" / split).mkdir(parents=True)
        for i in range(images):
            rng = np.random.default_rng(i)
            image, label = render_scene(width, height, ADE20K_NUM_CLASSES, rng)
            Image.fromarray(image).save(root / "images/training" / f"{i:05d}.jpg", quality=90)
            Image.fromarray(label).save(root / "annotations/training" / f"{i:05d}.png")
        dataset = ADE20KDataset(root, "training", transform=TrainTransform())
        pairs = [dataset.load(i) for i in range(images)]
        rates = {"load_and_transform": 0.0, "transform_only": 0.0}
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(images):
                dataset[(i, i)]
            rates["load_and_transform"] = max(
                rates["load_and_transform"], images / (time.perf_counter() - start)
            )
            start = time.perf_counter()
            for i, (image, label) in enumerate(pairs):
                dataset.transform(image, label, i)
            rates["transform_only"] = max(
                rates["transform_only"], images / (time.perf_counter() - start)
            )
    return rates


@user_errors(PROG)
def main(argv: list[str] | None = None) -> None:
    parser = tool_parser(PROG, __doc__)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--width", type=int, default=683)
    parser.add_argument("--height", type=int, default=512)
    args = parser.parse_args(argv)
    rates = benchmark(args.images, args.width, args.height)
    print(
        f"{args.width}x{args.height} JPEG, one process: "
        f"decode + train transform {rates['load_and_transform']:.1f} img/s, "
        f"train transform alone {rates['transform_only']:.1f} img/s"
    )


if __name__ == "__main__":
    main()
