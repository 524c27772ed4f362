"""A model file from someone else cannot run code (issue 17; vanseg.config.trust).

Real files are made here (a checkpoint with ``vanseg.save_model``, an export folder with
``vanseg.save_pretrained``), then poisoned the way an attacker would: a stored node names
``torch.hub.load`` on a folder with a ``hubconf.py``, or ``numpy.load`` of a pickled object
array. Each payload writes a marker file when it runs. Through every entry point that opens
such a file, the marker must never appear and the error must name the key path.
"""

from __future__ import annotations

import json
import pathlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vanseg
from vanseg.checkpoint.metadata import ModelMeta
from vanseg.config.compose import compose_config, model_config
from vanseg.config.trust import check_model_config
from vanseg.errors import UntrustedConfigError

NODES = ("backbone", "neck", "head", "aux_head")
MODEL = ["backbone=van_test", "head=upernet", "data.num_classes=5"]
NARROW = ["head.channels=32", "aux_head.channels=32"]


class _Pickled:
    """An object whose unpickling writes a file (what a hostile .npy or .ckpt carries)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.write_text, (self.marker, "payload ran"))


@pytest.fixture(scope="module")
def model_cfg() -> dict:
    return model_config(compose_config([*MODEL, *NARROW]))


@pytest.fixture(scope="module")
def real_files(model_cfg, tmp_path_factory) -> tuple[Path, Path]:
    """A real checkpoint and a real export folder of van_test + UperNet (aux head)."""
    folder = tmp_path_factory.mktemp("real")
    torch.manual_seed(0)
    model = vanseg.build_model_from_config(model_cfg)
    ckpt = folder / "model.ckpt"
    vanseg.save_model(model, model_cfg, ckpt)
    export = folder / "export"
    vanseg.save_pretrained(model, ModelMeta.from_model_and_data(model_cfg), export)
    return ckpt, export


def payloads(tmp_path: Path) -> dict[str, tuple[dict, Path]]:
    """``name -> (stored node, marker)``: each node writes its marker if it is ever called."""
    hub = tmp_path / "hubrepo"
    hub.mkdir()
    hub_marker = tmp_path / "hub_ran"
    (hub / "hubconf.py").write_text(
        f"import pathlib\npathlib.Path({str(hub_marker)!r}).write_text('ran')\n"
        "def x(**kw):\n    return 0.0\n"
    )
    npy = tmp_path / "payload.npy"
    npy_marker = tmp_path / "npy_ran"
    np.save(npy, np.array([_Pickled(npy_marker)], dtype=object), allow_pickle=True)
    return {
        "torch.hub.load": (
            {
                "_target_": "torch.hub.load",
                "repo_or_dir": str(hub),
                "model": "x",
                "source": "local",
            },
            hub_marker,
        ),  # fmt: skip
        "numpy.load": (
            {"_target_": "numpy.load", "file": str(npy), "allow_pickle": True},
            npy_marker,
        ),
    }


def poisoned_checkpoint(real: Path, node: str, payload: dict, out: Path) -> Path:
    ckpt = torch.load(real, weights_only=True)
    ckpt["vanseg"]["model"][node] = payload
    torch.save(ckpt, out)
    return out


def poisoned_export(real: Path, node: str, payload: dict, out: Path) -> Path:
    out.mkdir()
    (out / "model.safetensors").write_bytes((real / "model.safetensors").read_bytes())
    config = json.loads((real / "config.json").read_text())
    config["model"][node] = payload
    (out / "config.json").write_text(json.dumps(config))
    return out


def _eval_py(ckpt: Path, tmp_path: Path) -> None:
    from vanseg.cli.eval import run
    from vanseg.utils.cli import user_errors

    cfg = compose_config([f"ckpt_path={ckpt}", f"output={tmp_path / 'eval'}"], "eval")
    user_errors("eval.py")(run)(cfg)


def _predict_py(ckpt: Path, tmp_path: Path) -> None:
    from vanseg.cli.predict import run
    from vanseg.utils.cli import user_errors

    (tmp_path / "in").mkdir(exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in" / "a.png")
    overrides = [f"ckpt_path={ckpt}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'o'}"]
    user_errors("predict.py")(run)(compose_config(overrides, "predict"))


ENTRY_POINTS = {
    "from_pretrained": ("export", lambda path, _: vanseg.from_pretrained(path)),
    "Segmenter.from_pretrained": ("export", lambda path, _: vanseg.Segmenter.from_pretrained(path)),
    "load_model": ("ckpt", lambda path, _: vanseg.load_model(path)),
    "Segmenter.from_checkpoint": ("ckpt", lambda path, _: vanseg.Segmenter.from_checkpoint(path)),
    "eval.py": ("ckpt", _eval_py),
    "predict.py": ("ckpt", _predict_py),
}


@pytest.mark.parametrize("payload", ["torch.hub.load", "numpy.load"])
@pytest.mark.parametrize("node", NODES)
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_a_payload_in_any_node_never_runs(
    entry: str, node: str, payload: str, real_files, tmp_path, capsys
) -> None:
    kind, open_file = ENTRY_POINTS[entry]
    stored, marker = payloads(tmp_path)[payload]
    ckpt, export = real_files
    if kind == "ckpt":
        path = poisoned_checkpoint(ckpt, node, stored, tmp_path / "poisoned.ckpt")
        key = f"vanseg.model.{node}._target_"
    else:
        path = poisoned_export(export, node, stored, tmp_path / "poisoned")
        key = f"model.{node}._target_"
    if entry.endswith(".py"):
        with pytest.raises(SystemExit) as exit_info:
            open_file(path, tmp_path)
        assert exit_info.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and key in lines[0] and payload in lines[0], lines
    else:
        with pytest.raises(UntrustedConfigError, match=rf"{key} names '{payload}'"):
            open_file(path, tmp_path)
    assert not marker.exists()


def test_a_stealth_payload_is_refused_not_exported(real_files, tmp_path) -> None:
    """A payload returning a valid value (0.0 for drop_path_rate) would let eval.py succeed
    and tools.export copy it into a new config.json: refused at the first load instead."""
    ckpt, _ = real_files
    stored, marker = payloads(tmp_path)["torch.hub.load"]
    poisoned = torch.load(ckpt, weights_only=True)
    poisoned["vanseg"]["model"]["backbone"]["drop_path_rate"] = stored
    torch.save(poisoned, tmp_path / "stealth.ckpt")
    from vanseg.tools.export import main as export

    with pytest.raises(SystemExit) as exit_info:
        export([f"ckpt_path={tmp_path / 'stealth.ckpt'}", "format=safetensors",
                f"output={tmp_path / 'out'}"])  # fmt: skip
    assert exit_info.value.code == 2
    assert not marker.exists() and not (tmp_path / "out").exists()
    with pytest.raises(UntrustedConfigError, match=r"backbone\.drop_path_rate\._target_"):
        vanseg.load_model(tmp_path / "stealth.ckpt")


def test_a_payload_in_the_stored_data_config_never_runs(real_files, tmp_path, capsys) -> None:
    ckpt, _ = real_files
    stored, marker = payloads(tmp_path)["numpy.load"]
    poisoned = torch.load(ckpt, weights_only=True)
    poisoned["vanseg"]["config"] = {"data": stored}
    torch.save(poisoned, tmp_path / "data.ckpt")
    with pytest.raises(SystemExit):
        _eval_py(tmp_path / "data.ckpt", tmp_path)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "vanseg.config.data._target_ names 'numpy.load'" in line
    assert not marker.exists()


def test_a_pickled_checkpoint_in_the_run_folder_never_runs_at_a_nan_stop(tmp_path, caplog):
    from vanseg.training.checkpointing import keep_finite_checkpoint

    marker = tmp_path / "pickle_ran"
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    weights = {"w": torch.ones(2)}
    torch.save({"global_step": 2, "state_dict": weights}, folder / "step_000002.ckpt")
    torch.save({"global_step": 3, "state_dict": weights, "x": _Pickled(marker)},
               folder / "step_000003.ckpt")  # fmt: skip
    (folder / "damaged.ckpt").write_bytes(b"PK\x03\x04 cut short")
    with caplog.at_level("WARNING", logger="vanseg"):
        best = keep_finite_checkpoint(folder, bad_step=5)
    assert not marker.exists()
    assert best == folder / "step_000002.ckpt"
    assert (folder / "last.ckpt").read_bytes() == best.read_bytes()
    assert {p.name for p in folder.iterdir()} >= {
        "unreadable_step_000003.ckpt",
        "unreadable_damaged.ckpt",
    }
    moved = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(moved) == 2 and all("\n" not in m for m in moved)


@pytest.mark.parametrize(
    ("node", "key", "message"),
    [
        ({"_target_": "vanseg.models.van_test", "_args_": [1]}, "_args_", "not allowed"),
        ({"_target_": "vanseg.models.van_test", "x": {"_target_": "os.getcwd"}}, "x._target_",
         "nested node"),
        ({"_target_": "vanseg.models.van_test", "_partial_": "yes"}, "_partial_", "'yes'"),
        ({"_target_": "vanseg.models.van_test", "path": "${oc.env:HOME}"}, "path",
         "interpolation"),
        ({"_target_": "builtins.eval", "_partial_": True}, "_target_", "builtins.eval"),
        ({"_target_": "timm.create_model", "model_name": "resnet18", "pretrained": True},
         "pretrained", "must be false"),
        ({"_target_": "timm.create_model", "model_name": "resnet18",
          "checkpoint_path": "/tmp/x.pth"}, "checkpoint_path", "not an architecture option"),
        ({"_target_": "timm.create_model", "model_name": "no_such_net"}, "model_name",
         "not a timm model"),
    ],
)  # fmt: skip
def test_the_gate_refuses_instructions_objects_and_unknown_names(
    model_cfg, node, key, message
) -> None:
    cfg = {**model_cfg, "backbone": node}
    with pytest.raises(UntrustedConfigError, match=rf"f\.ckpt: m\.backbone\.{key} .*{message}"):
        check_model_config(cfg, "f.ckpt", "m")


def test_every_shipped_model_config_passes_the_gate() -> None:
    from tests.conftest import config_options

    for experiment in config_options("experiment"):
        # finetune_folder: data=folder, whose class count the user gives
        classes = ["data.num_classes=5"] if experiment == "finetune_folder" else []
        cfg = compose_config([f"experiment={experiment}", *classes])
        checked = check_model_config(model_config(cfg), experiment)
        assert checked["backbone"]["_target_"].startswith("vanseg.models.")
    for backbone in ("timm_resnet18", "van_test"):
        check_model_config(model_config(compose_config([f"backbone={backbone}"])), backbone)


def test_a_user_backbone_loads_only_once_trusted(real_files, tmp_path, monkeypatch) -> None:
    import sys
    import types

    module = types.ModuleType("mypkg_models")
    module.tiny_van = vanseg.models.van_test  # the user's own builder
    monkeypatch.setitem(sys.modules, "mypkg_models", module)
    ckpt, _ = real_files
    stored = torch.load(ckpt, weights_only=True)
    stored["vanseg"]["model"]["backbone"]["_target_"] = "mypkg_models.tiny_van"
    torch.save(stored, tmp_path / "user.ckpt")
    with pytest.raises(UntrustedConfigError, match="'mypkg_models.tiny_van'"):
        vanseg.load_model(tmp_path / "user.ckpt")
    monkeypatch.setattr("vanseg.config.trust._user_prefixes", set())
    vanseg.trust_model_targets("mypkg_models")
    model = vanseg.load_model(tmp_path / "user.ckpt")
    reference = vanseg.load_model(ckpt)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


@pytest.mark.parametrize("backbone", ["timm_resnet18", "van_test"])
def test_shipped_backbones_load_back_with_the_same_logits(backbone: str, tmp_path) -> None:
    cfg = model_config(compose_config([f"backbone={backbone}", "head=fpn", "data.num_classes=4"]))
    torch.manual_seed(0)
    model = vanseg.build_model_from_config(cfg).eval()
    vanseg.save_model(model, cfg, tmp_path / "m.ckpt")
    loaded = vanseg.load_model(tmp_path / "m.ckpt")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
