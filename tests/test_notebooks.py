"""The quick-start notebook runs top to bottom in a real Jupyter kernel (nbclient + ipykernel).

Outputs are stripped in git; the executed copy is checked for what a reader should see: the
class count, the mask shape, the parameter/MAC numbers of the paper table, the overlay and the
plot as pictures, and the export round trip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "quickstart.ipynb"

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _has_png(cell) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.outputs)


def test_outputs_are_stripped() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "strip outputs first"


@pytest.mark.slow
def test_quickstart_runs_in_a_kernel(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError with the cell's traceback on any error
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors
    everything = "\n".join(_text(cell) for cell in code)
    assert "150 classes: wall, building, sky, floor, tree ..." in everything
    # Light-Ham VAN-Tiny: 4.9M parameters, 11.3 GMACs at 512x512 (docs/reference.md §1).
    assert "4.9M params, 11.3 GMACs" in everything
    assert "mask (240, 320) probs (150, 240, 320)" in everything
    assert "['config.json', 'model.safetensors']" in everything
    assert "same mask after the round trip: True" in everything
    overlay = next(c for c in code if c.source.startswith("res.overlay()"))
    plot = next(c for c in code if "plt.show()" in c.source)
    assert _has_png(overlay) and _has_png(plot)
