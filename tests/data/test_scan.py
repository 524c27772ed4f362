"""The up-front scan: every broken file of both splits named at once, before any training."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from vanseg.data.check import check_dataset, format_report
from vanseg.data.datamodule import ADE20KDataModule
from vanseg.data.scan import crop_note, scan
from vanseg.errors import ConfigError, DatasetError


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


@pytest.mark.parametrize("verify", ["headers", "full", "off"])
def test_duplicate_names_are_problems_in_every_mode(make_ade_layout, tmp_path, verify) -> None:
    root = make_ade_layout(tmp_path / "ade")
    train_img, train_ann = root / "images/training", root / "annotations/training"
    Image.new("RGB", (64, 48)).save(train_img / "img_0001.png")  # a second image img_0001
    Image.new("L", (64, 48)).save(train_ann / "img_0002.PNG")  # a second label img_0002
    if len(list(train_ann.glob("img_0002.*"))) < 2:
        pytest.skip("the file system ignores case: img_0002.PNG replaced img_0002.png")
    dm = _datamodule(root, verify, image_suffixes=[".jpg", ".png"])
    with pytest.raises(DatasetError) as err:
        dm.prepare_data()
    assert "1 problem(s)" in str(err.value)
    lines = [line for line in str(err.value).splitlines() if "img_0001" in line]
    assert len(lines) == 1 and "img_0001.jpg, img_0001.png" in lines[0]
    assert "img_0002.PNG, img_0002.png" in lines[0] and str(train_ann) in lines[0]
    with pytest.raises(DatasetError, match=r"img_0001\.jpg, img_0001\.png"):
        dm.dataset("training")  # the dataset itself never picks one of them
    report = check_dataset(root, 5, True, image_suffixes=(".jpg", ".png"), progress=False)
    assert report.problems == [lines[0].removeprefix("- ")]
    assert "no problems found" not in format_report(report, [f"c{i}" for i in range(5)])


def test_full_scan_finds_a_jpeg_damaged_in_the_middle(make_ade_layout, tmp_path) -> None:
    root = make_ade_layout(tmp_path / "ade", size=(320, 240))
    path = root / "images/training/img_0001.jpg"
    data = bytearray(path.read_bytes())
    sos = data.index(b"\xff\xda")  # start of scan: the entropy-coded data follows its header
    start, end = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big"), len(data) - 2
    middle = (start + end) // 2
    data[middle : middle + 200] = np.random.default_rng(0).integers(0, 256, 200, np.uint8).tobytes()
    path.write_bytes(bytes(data))
    assert data[-2:] == b"\xff\xd9"  # end marker intact: not cut short
    with Image.open(path) as img:
        img.load()  # PIL decodes it without a word
    _datamodule(root, "headers").prepare_data()  # headers do not decode it
    with pytest.raises(DatasetError) as err:
        _datamodule(root, "full").prepare_data()
    assert "1 problem(s)" in str(err.value)
    (line,) = [line for line in str(err.value).splitlines() if "img_0001" in line]
    assert str(path) in line and "Corrupt JPEG data" in line


def _png_header(path: Path, width: int, height: int) -> None:
    """A grayscale PNG that declares ``width x height`` pixels but holds only one row."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    idat = zlib.compress(bytes(width + 1))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_label_is_named_in_every_mode(make_ade_layout, tmp_path) -> None:
    root = make_ade_layout(tmp_path / "ade")
    label = root / "annotations/training/img_0001.png"
    _png_header(label, 20_000, 20_000)
    assert 20_000 * 20_000 > 2 * Image.MAX_IMAGE_PIXELS  # PIL refuses it as a bomb
    dataset = _datamodule(root, "off").dataset("training")  # verify=off: found when read
    with pytest.raises(DatasetError) as err:
        dataset.load(1)
    assert str(label) in str(err.value) and "\n" not in str(err.value)
    for verify in ("headers", "full"):
        with pytest.raises(DatasetError) as err:
            _datamodule(root, verify).prepare_data()
        assert "1 problem(s)" in str(err.value)
        (line,) = [line for line in str(err.value).splitlines() if "img_0001" in line]
        assert str(label) in line and "decompression bomb" in line


def test_exif_rotated_images_are_noted_and_size_mismatch_reported(
    make_ade_layout, tmp_path
) -> None:
    root = make_ade_layout(tmp_path / "ade")  # 64x48 (WxH) pairs
    rotated = {1: 6, 2: 3}  # img_0001 turned 90 degrees when viewed, img_0002 180 degrees
    for index, orientation in rotated.items():
        path = root / f"images/training/img_{index:04d}.jpg"
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.new("RGB", (64, 48), (90, 120, 150)).save(path, exif=exif.tobytes())
    # cv2.imread applies the orientation: img_0001 is viewed 48x64, so a label drawn on it is too.
    assert cv2.imread(str(root / "images/training/img_0001.jpg")).shape[:2] == (64, 48)
    label = root / "annotations/training/img_0001.png"
    Image.new("L", (48, 64)).save(label)
    for verify in ("headers", "full"):
        report = scan(root, ("training", "validation"), verify, 5, True)
        assert len(report.problems) == 1
        problem = report.problems[0]
        assert "img_0001.jpg is 64x48 (WxH)" in problem and f"{label} is 48x64" in problem
        (note,) = [note for note in report.notes if "EXIF" in note]
        assert "2 image(s) in split 'training'" in note
        assert "img_0001.jpg, img_0002.jpg" in note and "as stored" in note
