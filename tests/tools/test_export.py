"""ONNX export round trip: onnxruntime matches PyTorch at two sizes (issue 5, item 7)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import vanseg
from vanseg.config.compose import compose_config, model_config

INSTALL = 'ONNX export needs the `onnx` extra: pip install -e ".[onnx]"'
onnx = pytest.importorskip("onnx", reason=INSTALL)
ort = pytest.importorskip("onnxruntime", reason=INSTALL)

from vanseg.tools import export  # noqa: E402  (after the skip: it needs the extra at run time

SIZES = [[64, 64], [96, 80]]
NARROW = {
    "light_ham": ["head.channels=32"],
    "fpn": ["neck.out_channels=32", "head.channels=32"],
    "upernet": ["head.channels=32", "aux_head.channels=32"],
}


pytestmark = pytest.mark.usefixtures("one_thread")


def make_checkpoint(head: str, folder: Path) -> Path:
    cfg = compose_config(["backbone=van_test", f"head={head}", "data.num_classes=5", *NARROW[head]])
    model_cfg = model_config(cfg)
    torch.manual_seed(0)
    path = folder / f"{head}.ckpt"
    vanseg.save_model(vanseg.build_model_from_config(model_cfg), model_cfg, path)
    return path


def run_cli(ckpt: Path, *extra: str) -> list[dict]:
    sizes = ",".join(f"[{h},{w}]" for h, w in SIZES)
    return export.main([f"ckpt_path={ckpt}", f"check_sizes=[{sizes}]", *extra])


def test_light_ham_round_trip_legacy(tmp_path: Path) -> None:
    ckpt = make_checkpoint("light_ham", tmp_path)
    rows = run_cli(ckpt, "dynamo=false")
    assert [r["size"] for r in rows] == SIZES
    assert all(r["max_abs_diff"] <= 1e-3 for r in rows)
    path = ckpt.with_suffix(".onnx")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["num_classes"] == "5" and "eval_seed=0" in props["nmf_bases"]

    # Dynamic batch: every image gets the bases PyTorch uses for it alone with eval_seed=0.
    model = vanseg.load_model(ckpt)
    images = torch.randn(2, 3, 72, 56)
    (got,) = ort.InferenceSession(str(path)).run(["logits"], {"images": images.numpy()})
    with export.seeded_eval(model, 0), torch.no_grad():
        expected = torch.cat([model(images[i : i + 1]) for i in range(2)]).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-3, rtol=0)
    # The model itself is left as it was (no patched methods, eval_seed unchanged).
    nmf = [m for m in model.modules() if isinstance(m, export.NMF2D)]
    assert nmf and all(m.eval_seed is None and "init_bases" not in vars(m) for m in nmf)


def test_fpn_static_round_trip_legacy(tmp_path: Path) -> None:
    ckpt = make_checkpoint("fpn", tmp_path)
    rows = run_cli(ckpt, "dynamo=false", "dynamic=false")
    assert len(rows) == 1 and rows[0]["max_abs_diff"] <= 1e-3
    # fold=true (default): the VAN BatchNorms are folded into the convolutions
    ops = {node.op_type for node in onnx.load(str(ckpt.with_suffix(".onnx"))).graph.node}
    assert "BatchNormalization" not in ops


def test_fpn_dynamic_round_trip_legacy(tmp_path: Path) -> None:
    ckpt = make_checkpoint("fpn", tmp_path)
    assert all(r["max_abs_diff"] <= 1e-3 for r in run_cli(ckpt, "dynamo=false"))


class FrozenWidth(nn.Module):
    """Traces to a graph that is only right at the sample width."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images) * float(images.shape[-1])


def test_mismatch_fails_loudly(tmp_path: Path) -> None:
    model = FrozenWidth()
    path = export.export_onnx(model, tmp_path / "m.onnx", (32, 32), dynamo=False)
    with pytest.raises(export.ConfigError, match=r"atol=0.001 at 40x48 \("):
        export.check_onnx(model, path, [[32, 32], [40, 48]])


def test_bad_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    upernet = vanseg.build_model("van_test", "upernet", 5, overrides=NARROW["upernet"])
    with pytest.raises(export.ConfigError, match="dynamic=false"):
        export.export_onnx(upernet, tmp_path / "u.onnx", (64, 64))
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if the extra were incomplete
    with pytest.raises(export.ConfigError, match=r"onnxscript is not installed.*\[onnx\]"):
        export.export_onnx(FrozenWidth(), tmp_path / "m.onnx", (32, 32), dynamo=True)
    monkeypatch.undo()
    with pytest.raises(SystemExit):
        export.main([])  # no ckpt_path
    ckpt = tmp_path / "model.ckpt"
    ckpt.touch()
    ckpt.with_suffix(".onnx").touch()
    with pytest.raises(SystemExit):
        export.main([f"ckpt_path={ckpt}"])  # output exists, no overwrite=true
    with pytest.raises(SystemExit):
        export.main([f"ckpt_path={ckpt}", "format=tensorrt"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        export.main([f"ckpt_path={tmp_path / 'missing.ckpt'}"])
    assert exit_info.value.code == 2
    assert "export: error: checkpoint not found: ckpt_path=" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        export.main([f"ckpt_path={ckpt}", f"output={ckpt}", "overwrite=true"])
    assert exit_info.value.code == 2 and "is the input file" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("head", ["light_ham", "fpn"])
def test_round_trip_dynamo(head: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript", reason=INSTALL)
    rows = run_cli(make_checkpoint(head, tmp_path))
    assert all(r["max_abs_diff"] <= 1e-3 for r in rows)
