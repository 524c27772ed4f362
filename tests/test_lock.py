"""requirements.lock and pyproject.toml agree (scripts/lock.py)."""

from __future__ import annotations

import pytest

from scripts import lock


def test_lock_fits_pyproject() -> None:
    assert lock.problems(lock.LOCK.read_text()) == []


def test_every_direct_requirement_is_pinned_once() -> None:
    pins = lock.read_pins(lock.LOCK.read_text())
    lines = [line for line in lock.LOCK.read_text().splitlines() if lock.PIN_LINE.match(line)]
    assert len(lines) == len(pins) > 50  # transitive packages too, no name twice
    assert {"torch", "opencv-python-headless", "numpy", "pip"} <= pins.keys()


def test_an_edited_pyproject_or_a_pin_out_of_range_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = lock.LOCK.read_text()
    out_of_range = text.replace("\nalbumentations==2.0.8\n", "\nalbumentations==2.0.9\n")
    assert out_of_range != text
    assert lock.problems(out_of_range) == [
        "albumentations==2.0.9 is outside pyproject.toml's range albumentations==2.0.8"
    ]
    missing = text.replace("\nalbumentations==2.0.8\n", "\n")
    assert lock.problems(missing) == ["albumentations is required by pyproject.toml but not pinned"]
    edited = lock.PYPROJECT.read_text().replace('"rich>=13"', '"rich>=14"')
    monkeypatch.setattr(lock.tomllib, "loads", lambda _, real=lock.tomllib.loads: real(edited))
    assert lock.problems(text) == [
        "pyproject.toml's requirements changed since requirements.lock was written"
    ]
