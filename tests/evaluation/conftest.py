"""Fixtures of the evaluation tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _evaluation_on_one_thread(one_thread: None) -> None:
    """Every evaluation test runs on one thread (the shared ``one_thread`` fixture)."""
