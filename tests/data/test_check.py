"""`python -m vanseg.data.check`: every problem reported in one pass, exit status."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vanseg.data.check import check_dataset, main


def folder_args(root) -> list[str]:
    return [
        "data=folder",
        f"data.root={root}",
        "data.num_classes=5",
        "data.reduce_zero_label=true",
        "--no-progress",
    ]


def test_clean_dataset_passes(tiny_ade_root, capsys):
    assert main(folder_args(tiny_ade_root)) == 0
    out = capsys.readouterr().out
    assert "no problems found" in out and "'training': 4" in out


def test_all_problems_are_reported_at_once(tmp_path, make_ade_layout, capsys):
    root = make_ade_layout(tmp_path / "ds", num_train=6, num_val=2)
    train_img, train_lab = root / "images/training", root / "annotations/training"
    (train_lab / "img_0000.png").unlink()  # image without label
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(train_lab / "orphan.png")  # no image
    (train_img / "img_0001.jpg").write_bytes(b"corrupt")  # unreadable image
    Image.fromarray(np.zeros((40, 64), np.uint8)).save(train_lab / "img_0002.png")  # size
    Image.fromarray(np.full((48, 64), 9, np.uint8)).save(train_lab / "img_0003.png")  # values
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(train_lab / "img_0004.png")  # RGB
    (root / "annotations/validation/img_0001.png").unlink()

    assert main(folder_args(root)) == 1
    out = capsys.readouterr().out
    assert "img_0000.jpg" in out and "orphan.png" in out
    assert "Cannot read image" in out and "img_0001.jpg" in out
    assert "64x48" in out and "64x40" in out
    assert "img_0003.png" in out and "[8]" in out
    assert "img_0004.png" in out and "RGB-mode" in out
    assert "split 'validation'" in out
    assert "6 problem(s)" in out


def test_missing_split_is_a_problem_not_a_crash(tmp_path, make_ade_layout):
    root = make_ade_layout(tmp_path / "ds", num_train=2, num_val=0)
    report = check_dataset(root, 5, True, progress=False)
    assert not report.ok and "validation" in report.problems[0]
    assert report.pairs == {"training": 2}


def test_worker_processes_give_the_same_report(tmp_path, make_ade_layout):
    root = make_ade_layout(tmp_path / "ds", num_train=5, num_val=1)
    Image.fromarray(np.full((48, 64), 9, np.uint8)).save(root / "annotations/training/img_0002.png")
    serial = check_dataset(root, 5, True, progress=False)
    parallel = check_dataset(root, 5, True, workers=2, progress=False)
    assert serial.problems == parallel.problems and len(serial.problems) == 1
    np.testing.assert_array_equal(serial.class_pixels, parallel.class_pixels)
