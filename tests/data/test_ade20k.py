"""ADE20K-layout dataset: label reading and reduction, metadata, and every bad-input error."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vanseg.data import ADE20K_CLASSES, ADE20K_PALETTE, ADE20KDataset
from vanseg.data.ade20k import find_pairs, load_image, load_label, reduce_zero_label
from vanseg.data.classes import resolve_class_names, resolve_palette
from vanseg.errors import DatasetError, InputNotFoundError


def save_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def save_palette_png(path: Path, indices: np.ndarray, colours: list[tuple[int, int, int]]) -> Path:
    """A palette-mode ("P") PNG holding ``indices``, with the given colours as palette."""
    image = Image.new("P", (indices.shape[1], indices.shape[0]))
    image.putpalette([v for colour in colours for v in colour])
    image.putdata(indices.ravel().tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    assert Image.open(path).mode == "P"
    return path


# --- labels ------------------------------------------------------------------------------------
def test_reduce_zero_label_on_a_tiny_png(tmp_path):
    raw = np.array([[0, 1, 2], [150, 255, 3]], np.uint8)
    path = save_png(tmp_path / "label.png", raw)
    label = load_label(path, num_classes=150, reduce_zero=True)
    # 0 -> 255 (ignore), k -> k - 1, 255 stays 255 (docs/reference.md §8 step 2)
    np.testing.assert_array_equal(label, [[255, 0, 1], [149, 255, 2]])
    assert label.dtype == np.uint8


def test_no_reduction_keeps_values(tmp_path):
    path = save_png(tmp_path / "label.png", np.array([[0, 1, 255]], np.uint8))
    np.testing.assert_array_equal(load_label(path, 2, reduce_zero=False), [[0, 1, 255]])


def test_reduce_zero_label_is_not_idempotent_so_it_must_run_once():
    once = reduce_zero_label(np.array([0, 1, 2, 255]))
    np.testing.assert_array_equal(once, [255, 0, 1, 255])
    twice = reduce_zero_label(once)
    np.testing.assert_array_equal(twice, [255, 255, 0, 255])  # class 0 would be lost


def test_palette_png_is_read_as_indices(tmp_path):
    indices = np.array([[0, 1], [2, 3]], np.uint8)
    # Colours whose luminance ("L" conversion) would give other numbers than the indices.
    colours = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
    path = save_palette_png(tmp_path / "palette.png", indices, colours)
    np.testing.assert_array_equal(load_label(path, 4, reduce_zero=False), indices)


def test_palette_png_dataset(tmp_path):
    root = tmp_path / "custom"
    colours = [(10, 20, 30), (200, 100, 50), (1, 2, 3)]
    for i in range(2):
        save_png(root / f"images/training/{i}.png", np.zeros((8, 6, 3), np.uint8))
        indices = ((np.arange(48) + i) % 3).reshape(8, 6).astype(np.uint8)
        save_palette_png(root / f"annotations/training/{i}.png", indices, colours)
    ds = ADE20KDataset(
        root, "training", num_classes=3, reduce_zero_label=False, image_suffixes=(".png",)
    )
    np.testing.assert_array_equal(ds[1]["mask"].numpy().ravel(), (np.arange(48) + 1) % 3)


def test_images_are_rgb(tmp_path):
    gray = tmp_path / "gray.jpg"
    Image.fromarray(np.full((4, 5), 77, np.uint8)).save(gray)
    image = load_image(gray)
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.array([[[255, 0, 0]]], np.uint8)).save(rgb)
    np.testing.assert_array_equal(load_image(rgb), [[[255, 0, 0]]])  # not BGR


# --- metadata ------------------------------------------------------------------------------------
def test_ade20k_class_names_and_palette():
    assert len(ADE20K_CLASSES) == 150 == len(set(ADE20K_CLASSES))
    assert ADE20K_CLASSES[:4] == ("wall", "building", "sky", "floor")
    assert ADE20K_CLASSES[-1] == "flag" and ADE20K_CLASSES[7] == "bed"
    assert len(ADE20K_PALETTE) == 150
    assert ADE20K_PALETTE[0] == (120, 120, 120) and ADE20K_PALETTE[-1] == (92, 0, 255)
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in ADE20K_PALETTE)


def test_class_names_and_palette_options():
    assert resolve_class_names(None, 3) == ("class_0", "class_1", "class_2")
    assert resolve_class_names(["a", "b"], 2) == ("a", "b")
    with pytest.raises(ValueError, match="3 class names given for num_classes=2"):
        resolve_class_names(["a", "b", "c"], 2)
    assert len(set(resolve_palette(None, 40))) == 40
    with pytest.raises(ValueError, match="not three integers"):
        resolve_palette([[0, 0, 256]], 1)


# --- the dataset ---------------------------------------------------------------------------------
def test_dataset_items_and_sorted_order(tiny_ade_root):
    ds = ADE20KDataset(tiny_ade_root, "training", num_classes=5)
    assert len(ds) == 4 and ds.names == sorted(ds.names)
    sample = ds[0]
    assert sample["image"].shape == (3, 48, 64) and sample["image"].dtype == torch.float32
    assert sample["mask"].shape == (48, 64) and sample["mask"].dtype == torch.int64
    assert set(sample["mask"].unique().tolist()) <= {0, 1, 2, 3, 4, 255}
    raw = np.asarray(Image.open(tiny_ade_root / "annotations/training/img_0000.png"))
    np.testing.assert_array_equal(sample["mask"].numpy() == 255, raw == 0)
    assert sample["name"] == "img_0000"
    assert ds[(0, 5)]["name"] == "img_0000"  # (index, seed) keys from the sampler


# --- bad input: one test per case of the issue ------------------------------------------------
def test_missing_root_names_path_layout_download_and_synthetic(tmp_path):
    missing = tmp_path / "nowhere" / "ADEChallengeData2016"
    with pytest.raises(InputNotFoundError) as err:
        ADE20KDataset(missing, "training")
    message = str(err.value)
    assert str(missing) in message
    assert "images/training/*.jpg" in message and "annotations/training/*.png" in message
    assert "python -m vanseg.data.download ade20k --root data/ade" in message
    assert "data=synthetic" in message


def test_root_not_in_layout(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(InputNotFoundError, match="annotations/training"):
        find_pairs(tmp_path, "training")
    (tmp_path / "images/training").mkdir()
    (tmp_path / "annotations/training").mkdir(parents=True)
    with pytest.raises(InputNotFoundError, match="empty"):
        find_pairs(tmp_path, "training")


def test_images_without_labels_and_labels_without_images(tmp_path, make_ade_layout):
    root = make_ade_layout(tmp_path / "ds", num_train=9, num_val=1)
    for i in range(7):
        (root / f"annotations/training/img_{i:04d}.png").unlink()
    shutil.copy(root / "annotations/training/img_0008.png", root / "annotations/training/zz.png")
    with pytest.raises(DatasetError) as err:
        ADE20KDataset(root, "training", num_classes=5)
    message = str(err.value)
    assert "7 image(s)" in message and "1 label(s)" in message
    assert "img_0000.jpg, img_0001.jpg, img_0002.jpg, img_0003.jpg, img_0004.jpg, ..." in message
    assert "img_0006" not in message and "zz.png" in message


def test_size_mismatch_names_file_and_sizes(tmp_path, make_ade_layout):
    root = make_ade_layout(tmp_path / "ds", num_train=1, num_val=1)
    label_path = root / "annotations/training/img_0000.png"
    save_png(label_path, np.zeros((48, 60), np.uint8))
    ds = ADE20KDataset(root, "training", num_classes=5)
    with pytest.raises(DatasetError) as err:
        ds[0]
    message = str(err.value)
    assert "img_0000.jpg" in message and str(label_path) in message
    assert "64x48" in message and "60x48" in message


def test_out_of_range_label_values(tmp_path):
    path = save_png(tmp_path / "bad.png", np.array([[0, 1, 5, 7, 200]], np.uint8))
    with pytest.raises(DatasetError) as err:
        load_label(path, num_classes=5, reduce_zero=True)  # raw 1..5 valid; 7 -> 6, 200 -> 199
    message = str(err.value)
    assert str(path) in message and "[6, 199]" in message
    with pytest.raises(DatasetError, match=r"\[5, 7, 200\]"):
        load_label(path, num_classes=5, reduce_zero=False)


def test_rgb_label_file_is_rejected(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0] = (200, 10, 10)
    path = save_png(tmp_path / "colour.png", rgb)
    with pytest.raises(DatasetError) as err:
        load_label(path, num_classes=5, reduce_zero=False)
    message = str(err.value)
    assert str(path) in message and "RGB-mode" in message and "(200, 10, 10)" in message
    rgba = Image.fromarray(np.zeros((4, 4, 4), np.uint8))
    rgba.save(tmp_path / "rgba.png")
    with pytest.raises(DatasetError, match="RGBA-mode"):
        load_label(tmp_path / "rgba.png", num_classes=5, reduce_zero=False)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_is_an_error_not_a_skip(tiny_ade_root, tmp_path, damage):
    root = tmp_path / "ds"
    shutil.copytree(tiny_ade_root, root)
    path = root / "images/training/img_0001.jpg"
    data = path.read_bytes()
    path.write_bytes(b"not a jpeg" if damage == "garbage" else data[: len(data) // 2])
    ds = ADE20KDataset(root, "training", num_classes=5)
    ds[0]
    with pytest.raises(DatasetError, match="img_0001.jpg"):
        ds[1]
