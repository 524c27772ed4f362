"""The notebooks run top to bottom (their outputs are stripped in git)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path) -> None:
    nb = json.loads(path.read_text())
    namespace: dict = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name}: strip outputs before committing"
            exec(compile("".join(cell["source"]), str(path), "exec"), namespace)
    assert namespace["logits"].shape == (1, 150, 512, 683)
    assert round(namespace["c"].gmacs, 1) == 11.3
