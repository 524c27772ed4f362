"""python -m vanseg.tools.compare_eval on two hand-written report folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vanseg.errors import USER_ERROR_EXIT, ConfigError
from vanseg.tools.compare_eval import compare_runs, main

HEADER = "index,image,mIoU,aAcc,pixels,confused_label,confused_pred,confused_pixels"


def _run(folder: Path, summary: dict, per_class: list, images: list[str]) -> Path:
    folder.mkdir(parents=True)
    document = {"summary": summary, "per_class": per_class}
    (folder / "metrics.json").write_text(json.dumps(document))
    (folder / "per_image.csv").write_text("\n".join([HEADER, *images]) + "\n")
    return folder


def _class(index: int, name: str, iou: float | None, acc: float | None) -> dict:
    return {"index": index, "class": name, "IoU": iou, "Acc": acc}


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    a = _run(
        tmp_path / "a",
        {"mIoU": 40.0, "mAcc": 50.5, "aAcc": 80.25},
        [_class(0, "wall", 60.0, 70.0), _class(1, "sky", 20.0, 31.0), _class(2, "cat", None, None)],
        [
            "0,x,50.00,80.00,10,,,",
            "1,y,30.00,60.00,10,,,",
            "2,z,10.00,20.00,10,,,",
            "3,w,nan,nan,0,,,",
        ],
    )
    b = _run(
        tmp_path / "b",
        {"mIoU": 42.5, "mAcc": 50.0, "aAcc": 81.0},
        [_class(0, "wall", 55.5, 71.0), _class(1, "sky", 29.5, 30.0), _class(2, "cat", 5.0, 9.0)],
        [
            "0,x,51.00,80.00,10,,,",
            "1,y,10.00,60.00,10,,,",
            "2,z,25.00,20.00,10,,,",
            "4,v,9.0,1,1,,,",
        ],
    )
    return a, b


def test_deltas_by_hand(runs) -> None:
    cmp = compare_runs(*runs, top=2)
    assert cmp.summary == [
        ("mIoU", 40.0, 42.5, 2.5),
        ("mAcc", 50.5, 50.0, -0.5),
        ("aAcc", 80.25, 81.0, 0.75),
    ]
    # wall: 55.5 - 60 = -4.5 (largest drop first); sky +9.5; cat nan in A (last).
    assert [(r[1], r[4], r[7]) for r in cmp.classes] == [
        ("wall", -4.5, 1.0),
        ("sky", 9.5, -1.0),
        ("cat", None, None),
    ]
    # y: -20, z: +15, x: +1 (w is nan in A; v only in B; w only in A).
    assert cmp.images == [("y", 30.0, 10.0, -20.0), ("z", 10.0, 25.0, 15.0)]
    assert cmp.unmatched == 2


def test_cli_prints_tables_and_writes_a_page(runs, tmp_path, capsys) -> None:
    page = tmp_path / "compare.html"
    main([str(runs[0]), str(runs[1]), "-o", str(page)])
    out = capsys.readouterr().out
    assert "-4.50" in out and "+9.50" in out and "-20.00" in out
    text = page.read_text()
    assert 'id="classes" class="sortable"' in text and "<script>" in text
    assert text.count("<tr>") == 1 + 3 + 1 + 3 + 1 + 3  # headers + rows of the three tables
    with pytest.raises(SystemExit) as err:  # an existing page needs --overwrite
        main([str(runs[0]), str(runs[1]), "-o", str(page)])
    assert err.value.code == USER_ERROR_EXIT
    assert "compare.html already exists; pass --overwrite" in capsys.readouterr().err


def test_missing_files_end_in_one_line(runs, tmp_path) -> None:
    (runs[1] / "per_image.csv").unlink()
    for args, missing in [
        ([str(runs[0]), str(tmp_path / "nope")], tmp_path / "nope" / "metrics.json"),
        ([str(runs[0]), str(runs[1])], runs[1] / "per_image.csv"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "vanseg.tools.compare_eval", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == USER_ERROR_EXIT
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith(
            f"python -m vanseg.tools.compare_eval: error: {missing} not found"
        )


def test_different_classes_are_refused(runs, tmp_path) -> None:
    other = _run(tmp_path / "c", {"mIoU": 1, "mAcc": 1, "aAcc": 1}, [_class(0, "x", 1, 1)], [])
    with pytest.raises(ConfigError, match="different classes"):
        compare_runs(runs[0], other)
