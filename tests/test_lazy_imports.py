"""The speed code loads only when asked for: ``import vanseg`` and a plain model leave it out.

Each check runs in a fresh interpreter (this test process has long since imported everything)
and reads ``sys.modules`` after each step. A static check beside it keeps the layers apart:
``vanseg.accel`` imports nothing from the packages above it, and a model module imports the
speed code only inside a ``fuse()`` or in a fused-twin module that only ``fuse()`` imports.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import vanseg

#: The model-side inference twins; only the models' ``fuse()`` methods import them.
FUSED_TWINS = ("vanseg.models.backbones.van_fused", "vanseg.models.heads.fused")

#: Prints, as JSON, the speed modules loaded after each step.
SCRIPT = f"""
import json, sys

def speed_modules():
    return sorted(
        name for name in sys.modules
        if name == "vanseg.accel" or name.startswith("vanseg.accel.") or name in {FUSED_TWINS!r}
    )

steps = {{}}
import torch
import vanseg
steps["import vanseg"] = speed_modules()
model = vanseg.build_model("van_test", "light_ham", num_classes=5).eval()
with torch.inference_mode():
    logits = model(torch.randn(1, 3, 64, 64))
assert logits.shape == (1, 5, 64, 64), logits.shape
steps["build_model + fp32 forward"] = speed_modules()
fast = vanseg.optimize(model)
with torch.inference_mode():
    fast(torch.randn(1, 3, 64, 64))
steps["vanseg.optimize"] = speed_modules()
steps["optimize is"] = [type(vanseg.optimize).__name__, vanseg.optimize.__module__]
print(json.dumps(steps))
"""


@pytest.fixture(scope="module")
def loaded() -> dict[str, list[str]]:
    """The speed modules a fresh interpreter holds after each step of :data:`SCRIPT`."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_vanseg_loads_no_speed_code(loaded: dict[str, list[str]]) -> None:
    assert loaded["import vanseg"] == []


def test_a_plain_model_and_its_forward_load_no_speed_code(loaded: dict[str, list[str]]) -> None:
    assert loaded["build_model + fp32 forward"] == []


def test_optimize_loads_the_speed_code_and_the_twins(loaded: dict[str, list[str]]) -> None:
    after = set(loaded["vanseg.optimize"])
    assert {"vanseg.accel.optimize", "vanseg.accel.fold", *FUSED_TWINS} <= after


def test_vanseg_optimize_is_the_function(loaded: dict[str, list[str]]) -> None:
    assert loaded["optimize is"] == ["function", "vanseg.accel.optimize"]
    assert callable(vanseg.optimize) and vanseg.optimize.__module__ == "vanseg.accel.optimize"


SRC = Path(vanseg.__file__).parent
#: What `vanseg.accel` may import from the package: itself and the leaf modules.
ACCEL_MAY_IMPORT = ("vanseg.accel", "vanseg.errors", "vanseg.utils")


def _imports(path: Path, top_level_only: bool = False) -> list[str]:
    """The ``vanseg.*`` modules that ``path`` imports (at module level only, if asked)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return [name for name in names if name == "vanseg" or name.startswith("vanseg.")]


def _module_name(path: Path) -> str:
    return ".".join(("vanseg", *path.relative_to(SRC).with_suffix("").parts))


def test_accel_imports_nothing_above_it() -> None:
    climbing = {
        _module_name(path): name
        for path in sorted((SRC / "accel").rglob("*.py"))
        for name in _imports(path)
        if not name.startswith(ACCEL_MAY_IMPORT)
    }
    assert climbing == {}


def test_models_import_the_speed_code_only_lazily() -> None:
    eager = {
        _module_name(path): name
        for path in sorted((SRC / "models").rglob("*.py"))
        if _module_name(path) not in FUSED_TWINS
        for name in _imports(path, top_level_only=True)
        if name.startswith("vanseg.accel") or name in FUSED_TWINS
    }
    assert eager == {}


def test_layers_import_no_head() -> None:
    upward = {
        _module_name(path): name
        for path in sorted((SRC / "models" / "layers").rglob("*.py"))
        for name in _imports(path)
        if name.startswith("vanseg.models.heads")
    }
    assert upward == {}
