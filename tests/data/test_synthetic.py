"""The generated ADE-layout dataset: layout, content, determinism, caching."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest
from PIL import Image

from tests.data.data_helpers import SMALL_SPEC
from vanseg.data.synthetic import (
    MANIFEST,
    SyntheticSpec,
    ensure_synthetic_dataset,
    synthetic_class_names,
    synthetic_root,
)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_layout_and_content(synthetic_cache):
    root = synthetic_root(synthetic_cache, SMALL_SPEC)
    assert root.name == "ADEChallengeData2016"
    classes_seen = set()
    for split, count in (("training", 6), ("validation", 3)):
        images = sorted((root / "images" / split).glob("*.jpg"))
        labels = sorted((root / "annotations" / split).glob("*.png"))
        assert len(images) == len(labels) == count
        assert [p.stem for p in images] == [p.stem for p in labels]
        for image_path, label_path in zip(images, labels, strict=True):
            image, label = Image.open(image_path), Image.open(label_path)
            assert image.format == "JPEG" and image.mode == "RGB"
            assert label.format == "PNG" and label.mode == "L"
            w, h = image.size
            assert label.size == (w, h) and w != h
            assert w % 32 and h % 32  # never a multiple of 32
            assert 147 <= min(w, h) and max(w, h) <= 300
            values = np.unique(np.asarray(label))
            assert values.min() >= 0 and values.max() <= SMALL_SPEC.num_classes
            classes_seen |= set(values.tolist())
    assert 0 in classes_seen  # unlabelled pixels exist
    assert len(classes_seen - {0}) >= 4


def test_scenes_are_not_trivial(synthetic_cache):
    # Several classes per image, and no class identified by one flat colour.
    root = synthetic_root(synthetic_cache, SMALL_SPEC)
    for label_path in sorted((root / "annotations/training").glob("*.png"))[:3]:
        label = np.asarray(Image.open(label_path))
        image = np.asarray(Image.open(root / "images/training" / f"{label_path.stem}.jpg"))
        main_class = np.bincount(label.ravel()).argmax()
        assert image[label == main_class].std(axis=0).max() > 10


def test_generation_is_deterministic(synthetic_cache, tmp_path):
    spec = SyntheticSpec(num_classes=6, num_train=2, num_val=1, min_side=150, max_side=300)
    a = ensure_synthetic_dataset(spec, tmp_path / "a")
    b = ensure_synthetic_dataset(spec, tmp_path / "b")
    files = sorted(p.relative_to(a) for p in a.rglob("*.*") if p.name != MANIFEST)
    assert len(files) == 6
    for rel in files:
        assert digest(a / rel) == digest(b / rel)
    # the first training images equal those of the larger SMALL_SPEC dataset too
    small = synthetic_root(synthetic_cache, SMALL_SPEC)
    first = "images/training/SYN_train_00000001.jpg"
    assert digest(a / first) == digest(small / first)


def test_cache_is_reused_and_atomic(tmp_path):
    spec = SyntheticSpec(num_classes=3, num_train=1, num_val=1, min_side=64, max_side=90)
    root = ensure_synthetic_dataset(spec, tmp_path)
    stamp = (root / MANIFEST).stat().st_mtime_ns
    assert ensure_synthetic_dataset(spec, tmp_path) == root
    assert (root / MANIFEST).stat().st_mtime_ns == stamp  # not regenerated
    assert [p.name for p in tmp_path.iterdir()] == [root.parent.name]  # no temp folders left
    other = ensure_synthetic_dataset(SyntheticSpec(3, 1, 1, 64, 90, seed=1), tmp_path)
    assert other != root  # another spec, another folder


def test_half_written_cache_is_never_used(tmp_path):
    spec = SyntheticSpec(num_classes=3, num_train=1, num_val=1, min_side=64, max_side=90)
    partial = synthetic_root(tmp_path, spec)
    (partial / "images/training").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="incomplete"):
        ensure_synthetic_dataset(spec, tmp_path)


def test_spec_validation_and_names():
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticSpec(num_classes=1)
    assert synthetic_class_names(3) == ("stripes_0", "checks_1", "dots_2")


@pytest.mark.slow
def test_default_size_generates_every_image(tmp_path):
    """The default dataset is complete (its generation time is printed, not asserted)."""
    start = time.perf_counter()
    root = ensure_synthetic_dataset(SyntheticSpec(), tmp_path)
    print(f"default synthetic dataset generated in {time.perf_counter() - start:.1f} s")
    assert len(list((root / "images/training").glob("*.jpg"))) == 200
