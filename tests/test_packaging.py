"""The built wheel works on its own: installed into a fresh venv outside the repository.

Slow (a wheel build and a venv). The fresh venv reuses this interpreter's installed
dependencies (torch & co.) through a ``.pth`` file pointing at a folder of links to them that
leaves out every trace of vanseg, so only the wheel can provide ``vanseg``.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: What a wheel is built from (everything else in the checkout must not matter).
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "conf", "src/vanseg")

#: ``light_ham_van_tiny`` (150 classes): the parameter count of the original (REFERENCE §1),
#: i.e. docs/reference.md §1.
LIGHT_HAM_TINY_PARAMS = 4_866_134

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _copy_sources(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "local")
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def _dependency_links(dest: Path) -> Path:
    """A folder of links to this interpreter's site-packages, without vanseg."""
    dest.mkdir()
    roots = {Path(p) for p in site.getsitepackages()} | {Path(sysconfig.get_path("purelib"))}
    for root in sorted(r for r in roots if r.is_dir()):
        for entry in root.iterdir():
            low = entry.name.lower()
            if low.startswith(("vanseg", "__editable__", "_vanseg")) or entry.suffix == ".pth":
                continue
            if not (dest / entry.name).exists():
                (dest / entry.name).symlink_to(entry)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(bin folder of a fresh venv with the vanseg wheel installed, environment to run it)."""
    pytest.importorskip("setuptools", minversion="77")  # builds without network (SPDX licence)
    root = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VANSEG_CONFIG_DIR")}
    env["PIP_NO_INDEX"] = "1"  # every dependency must come from the linked site-packages
    _copy_sources(root / "src")
    pip = [sys.executable, "-m", "pip"]
    _run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", "dist", "./src"], root, env
    )
    wheels = sorted((root / "dist").glob("vanseg-*.whl"))
    assert len(wheels) == 1, wheels

    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root, env)
    python = venv / "bin" / "python"
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], root, env
    )
    (Path(purelib.strip()) / "vanseg_test_deps.pth").write_text(
        f"{_dependency_links(root / 'deps')}\n"
    )
    _run([*pip, "--python", str(python), "install", "-q", str(wheels[0])], root, env)
    return venv / "bin", env


def test_wheel_ships_the_config_tree(installed: tuple[Path, dict[str, str]]) -> None:
    bin_dir, env = installed
    script = (
        "import json, vanseg; from vanseg.config.compose import config_dir, hydra_config_path;"
        "print(json.dumps([vanseg.__file__, str(config_dir()), hydra_config_path()]))"
    )
    outside = bin_dir.parent.parent  # a folder with no conf/, src/ or train.py
    module, conf, hydra_path = json.loads(
        _run([str(bin_dir / "python"), "-c", script], outside, env)
    )
    venv = str(bin_dir.parent)
    assert module.startswith(venv) and conf.startswith(venv), (module, conf)
    assert hydra_path == "pkg://vanseg.conf"
    shipped = {p.relative_to(conf).as_posix() for p in Path(conf).rglob("*.yaml")}
    in_repo = {
        p.relative_to(REPO / "conf").as_posix()
        for p in (REPO / "conf").rglob("*.yaml")
        if p.relative_to(REPO / "conf").parts[0] != "local"
    }
    assert shipped == in_repo


def test_wheel_ships_the_weights_registry(installed: tuple[Path, dict[str, str]]) -> None:
    bin_dir, env = installed
    script = (
        "import json; from vanseg.models import zoo;"
        "print(json.dumps([str(zoo._PACKAGED), sorted(zoo.registry())]))"
    )
    env = {k: v for k, v in env.items() if k != "VANSEG_ZOO"}
    path, names = json.loads(_run([str(bin_dir / "python"), "-c", script], bin_dir, env))
    assert path.startswith(str(bin_dir.parent)), path
    assert {"van_tiny_754", "light_ham_van_base_ade20k", "fpn_van_large_ade20k"} <= set(names)


def test_build_and_load_model_from_the_wheel(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bin_dir, env = installed
    script = f"""
import json, torch, vanseg
from vanseg.config.compose import compose_config, model_config
model = vanseg.build_model("van_tiny", "light_ham", num_classes=150).eval()
params = sum(p.numel() for p in model.parameters())
small = vanseg.build_model("van_test", "light_ham", num_classes=5).eval()
cfg = model_config(compose_config(["backbone=van_test", "head=light_ham", "data.num_classes=5",
                                   "backbone.pretrained=null"]))
vanseg.save_model(small, cfg, "{tmp_path}/m.pt")
loaded = vanseg.load_model("{tmp_path}/m.pt")
x = torch.rand(1, 3, 64, 64)
def run(m):  # the Ham heads start NMF from random bases: same seed for both models
    torch.manual_seed(0)
    with torch.no_grad():
        return m(x)
same = bool(torch.equal(run(small), run(loaded)))
shape = list(run(small).shape)
print(json.dumps({{"params": params, "same": same, "shape": shape}}))
"""
    out = json.loads(_run([str(bin_dir / "python"), "-c", script], tmp_path, env))
    assert out["params"] == LIGHT_HAM_TINY_PARAMS
    assert out["same"] is True
    assert out["shape"][:2] == [1, 5]


def test_console_scripts_and_tools(installed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    bin_dir, env = installed
    help_text = _run([str(bin_dir / "vanseg-train"), "--help"], tmp_path, env)
    assert "== Configuration groups ==" in help_text
    groups: dict[str, set[str]] = {}  # "group: a, b, c" lines; the config dump follows them
    for name, _, options in (line.partition(":") for line in help_text.splitlines()):
        groups.setdefault(name.strip(), {o.strip() for o in options.split(",")})
    for group, option in (("backbone", "van_base"), ("head", "fpn"), ("experiment", "demo")):
        assert option in groups.get(group, set()), (group, option)
    for script in ("vanseg-eval", "vanseg-predict"):
        assert "== Configuration groups ==" in _run(
            [str(bin_dir / script), "--help"], tmp_path, env
        )
    flops = [str(bin_dir / "python"), "-m", "vanseg.tools.flops", "--shape", "64", "64"]
    rows = tmp_path / "flops.json"
    _run([*flops, "--json", str(rows), "backbone=van_tiny", "head=light_ham"], tmp_path, env)
    assert json.loads(rows.read_text())[0]["params"] == LIGHT_HAM_TINY_PARAMS
    assert not any(tmp_path.glob("outputs")), "--help must not create run folders"


def test_segmenter_from_the_wheel(installed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """The inferencer and the safetensors round trip work from the installed wheel."""
    bin_dir, env = installed
    script = f"""
import json, numpy as np, vanseg
opts = dict(eval_seed=0, device="cpu", inference={{"base_scale": [128, 32]}})
seg = vanseg.Segmenter.build("van_test", "light_ham", num_classes=150, **opts)
image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
res = seg(image)
folder = vanseg.save_pretrained(seg.model, seg.meta, "{tmp_path}/export")
again = vanseg.Segmenter.from_pretrained(folder, **opts)
print(json.dumps({{"shape": list(res.mask.shape), "first": seg.classes[0],
                  "files": sorted(p.name for p in folder.iterdir()),
                  "same": bool((again(image).mask == res.mask).all())}}))
"""
    out = json.loads(_run([str(bin_dir / "python"), "-c", script], tmp_path, env))
    assert out["shape"] == [40, 56] and out["first"] == "wall"  # ADE20K class 0
    assert out["files"] == ["config.json", "model.safetensors"] and out["same"] is True
