"""Atomic writes: temp file + rename, existing files refused, inputs never replaced."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vanseg.errors import OutputExistsError
from vanseg.utils.atomic import atomic_path, atomic_write_text, check_destination


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_existing_destination_is_refused_unless_overwrite(tmp_path: Path) -> None:
    dst = tmp_path / "out.json"
    dst.write_text("old")
    with pytest.raises(OutputExistsError, match=f"{dst} already exists; pass overwrite=true"):
        atomic_write_text(dst, "new")
    assert dst.read_text() == "old"
    atomic_write_text(dst, "new", overwrite=True)
    assert dst.read_text() == "new"


def test_source_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "model.pth"
    src.write_bytes(b"weights")
    for dst in (src, tmp_path / "." / "model.pth"):
        with pytest.raises(OutputExistsError, match="is the input file"):
            check_destination(dst, overwrite=True, sources=[src])
    link = tmp_path / "link.pth"
    link.symlink_to(src)
    with pytest.raises(OutputExistsError, match="is the input file"):
        check_destination(link, overwrite=True, sources=[src])


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    dst = tmp_path / "result.csv"
    dst.write_text("complete old result")
    before = _sha(dst)
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(dst, overwrite=True) as tmp:
            tmp.write_text("half a res")
            raise RuntimeError("disk full")
    assert _sha(dst) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.csv"]


def test_temporary_keeps_the_suffix_and_lives_beside_the_destination(tmp_path: Path) -> None:
    dst = tmp_path / "sub" / "confusion.png"
    with atomic_path(dst) as tmp:
        assert tmp.parent == dst.parent and tmp.suffix == ".png" and tmp != dst
        assert not dst.exists()
        tmp.write_bytes(b"png")
    assert dst.read_bytes() == b"png" and not tmp.exists()
    assert dst.stat().st_mode & 0o044  # readable by others as a normal file, not mkstemp's 0600
