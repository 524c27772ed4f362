"""The up-front scan: every broken file of both splits named at once, before any training."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from vanseg.data.ade20k import DatasetError
from vanseg.data.check import check_dataset, format_report
from vanseg.data.datamodule import ADE20KDataModule
from vanseg.data.scan import crop_note, scan
from vanseg.errors import ConfigError


def _checksums(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def broken_root(make_ade_layout, tmp_path: Path) -> Path:
    """4 train / 2 val pairs (64x48, 5 classes) with one problem of each kind."""
    root = make_ade_layout(tmp_path / "ade")
    train_img, train_ann = root / "images/training", root / "annotations/training"
    val_ann = root / "annotations/validation"
    data = (train_img / "img_0000.jpg").read_bytes()
    (train_img / "img_0000.jpg").write_bytes(data[: len(data) // 2])  # truncated JPEG
    (train_ann / "img_0001.png").write_bytes(b"")  # zero-byte PNG
    Image.new("L", (60, 48)).save(train_ann / "img_0002.png")  # size mismatch
    Image.new("RGB", (64, 48), (200, 0, 0)).save(val_ann / "img_0000.png")  # colour label
    Image.new("RGB", (64, 48)).save(root / "images/validation/orphan.jpg")  # no label
    return root


def _datamodule(root: Path, verify: str, **kwargs) -> ADE20KDataModule:
    return ADE20KDataModule(
        root, num_classes=5, class_names=None, palette=None, verify=verify, **kwargs
    )


EXPECTED = [
    "images/training/img_0000.jpg",
    "annotations/training/img_0001.png",
    "annotations/training/img_0002.png",
    "annotations/validation/img_0000.png",
    "orphan.jpg",
]


def test_headers_scan_names_every_problem_at_once(broken_root: Path) -> None:
    before = _checksums(broken_root)
    with pytest.raises(DatasetError) as err:
        _datamodule(broken_root, "headers").prepare_data()
    message = str(err.value)
    assert "5 problem(s)" in message and "data.verify=headers" in message
    for name in EXPECTED:
        assert name.split("/")[-1] in message and (name == "orphan.jpg" or str(name) in message)
    assert "60x48" in message and "RGB-mode" in message and "truncated" in message
    assert _checksums(broken_root) == before  # the scan changes nothing


def test_label_values_need_the_full_scan(make_ade_layout, tmp_path: Path) -> None:
    root = make_ade_layout(tmp_path / "ade")
    label = root / "annotations/validation/img_0001.png"
    Image.fromarray(np.full((48, 64), 9, np.uint8)).save(label)  # raw 9 > num_classes=5
    _datamodule(root, "headers").prepare_data()  # headers do not read values
    with pytest.raises(DatasetError, match=r"(?s)1 problem.*img_0001.png has values outside"):
        _datamodule(root, "full").prepare_data()
    _datamodule(root, "off").prepare_data()


def test_off_still_checks_pairing(broken_root: Path) -> None:
    with pytest.raises(DatasetError, match=r"(?s)1 problem.*orphan.jpg"):
        _datamodule(broken_root, "off").prepare_data()


def test_unknown_verify_mode_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.verify='fast' is not one of headers|full|off"):
        _datamodule(tmp_path, "fast")


def test_sixteen_bit_images_are_notes_not_problems(make_ade_layout, tmp_path: Path) -> None:
    root = make_ade_layout(tmp_path / "ade")
    image = root / "images/training/img_0000.jpg"
    image.unlink()
    gray16 = np.random.default_rng(0).integers(0, 65536, (48, 64), dtype=np.uint16)
    cv2.imwrite(str(image.with_suffix(".png")), gray16)
    report = check_dataset(root, 5, True, image_suffixes=(".jpg", ".png"), progress=False)
    assert report.ok, report.problems
    assert any("16-bit" in note and "img_0000.png" in note for note in report.notes)
    assert "note: 1 image(s) in split 'training' are 16-bit" in format_report(
        report, [f"c{i}" for i in range(5)]
    )


def test_headers_and_full_agree_on_decodable_files(broken_root: Path) -> None:
    """Everything the header scan finds, the full scan finds too (it decodes every file)."""
    args = (broken_root, ("training", "validation"))
    headers = scan(*args, "headers", 5, True)
    full = scan(*args, "full", 5, True)
    assert len(headers.problems) == len(full.problems) == 5


def test_crop_larger_than_every_rescaled_image_is_noted() -> None:
    # 64x48 at scale (256, 64) x ratio 2 fits (512, 128): factor min(512/64, 128/48) = 8/3,
    # so 171x128 (W x H) at most.
    note = crop_note([(64, 48)], crop_size=(200, 200), scale=(256, 64), ratio_range=(0.5, 2.0))
    assert note is not None and "171x128" in note and "data.crop_size=[200, 200]" in note
    assert crop_note([(64, 48)], (128, 128), (256, 64), (0.5, 2.0)) is None
