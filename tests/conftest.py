"""Shared test fixtures: tiny datasets, one-thread runs, the config options of conf/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def config_options(group: str) -> list[str]:
    """The options of a ``conf/<group>`` config group, e.g. every head, sorted."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.fixture(autouse=True, scope="session")
def _offline_weights_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test downloads published weights: an empty cache and ``VANSEG_OFFLINE=1``.

    tests/models/test_zoo.py points the registry at a local HTTP server instead.
    """
    patch = pytest.MonkeyPatch()
    patch.setenv("VANSEG_CACHE", str(tmp_path_factory.mktemp("vanseg_cache")))
    patch.setenv("VANSEG_OFFLINE", "1")
    yield
    patch.undo()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; on a busy 2-core machine two threads crawl.

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_ade_layout(
    root: Path,
    num_train: int = 4,
    num_val: int = 2,
    size: tuple[int, int] = (64, 48),
    num_classes: int = 5,
    seed: int = 0,
) -> Path:
    """Write a tiny ADE20K-layout dataset: JPEG images, grayscale PNG labels in ``0..K``.

    Raw label 0 is "unlabelled" as in ADE20K, so read it with ``reduce_zero_label=True`` and
    ``num_classes=K``. Files are ``img_0000.jpg``/``img_0000.png`` and so on.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    for split, count in (("training", num_train), ("validation", num_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            label = rng.integers(0, num_classes + 1, size=(height, width), dtype=np.uint8)
            image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / "images" / split / f"img_{i:04d}.jpg")
            Image.fromarray(label).save(root / "annotations" / split / f"img_{i:04d}.png")
    return root


@pytest.fixture(scope="session")
def make_ade_layout() -> Callable[..., Path]:
    """`write_ade_layout`, for tests that need their own (possibly broken) copy."""
    return write_ade_layout


@pytest.fixture(scope="session")
def tiny_ade_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64x48, 5-class ADE20K-layout folder (4 train / 2 val pairs), built once per run."""
    return write_ade_layout(tmp_path_factory.mktemp("tiny_ade") / "ADEChallengeData2016")
