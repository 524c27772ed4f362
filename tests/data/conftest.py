"""Fixtures for the data tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.data_helpers import SMALL_SPEC
from vanseg.data.synthetic import ensure_synthetic_dataset


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cache folder holding the `SMALL_SPEC` generated dataset, written once per run."""
    cache = tmp_path_factory.mktemp("vanseg_cache")
    ensure_synthetic_dataset(SMALL_SPEC, cache)
    return cache
