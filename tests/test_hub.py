"""Shareable weights: export to model.safetensors + config.json and load back without pickle."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import vanseg
from vanseg.checkpoint.file import read_entry
from vanseg.checkpoint.hub import load_pretrained
from vanseg.checkpoint.metadata import ModelMeta
from vanseg.config.compose import compose_config, model_config
from vanseg.errors import CheckpointError
from vanseg.inference.passes import set_eval_seed
from vanseg.tools import export


def meta_of(ckpt: dict) -> ModelMeta:
    """What a checkpoint dict says about its model: its entry through the gate, then the meta."""
    return ModelMeta.from_entry(read_entry(ckpt, "checkpoint"), "checkpoint")


K = 4


def _model_cfg(num_classes: int = K) -> dict:
    return model_config(
        compose_config(
            ["backbone=van_test", "head=light_ham", f"data.num_classes={num_classes}"]
            + ["head.channels=32"]
        )
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    cfg = _model_cfg()
    model = vanseg.build_model_from_config(cfg)
    # Non-trivial BatchNorm statistics, so buffers are part of the round trip.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    vanseg.save_model(model, cfg, path)
    return path


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export") / "van-test-light-ham"
    export.main([f"ckpt_path={checkpoint}", "format=safetensors", f"output={folder}"])
    return folder


def _logits(model: torch.nn.Module) -> torch.Tensor:
    set_eval_seed(model, 0)  # Ham heads: the same NMF bases for both models
    images = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return model(images)


def test_round_trip_gives_identical_logits(checkpoint: Path, exported: Path) -> None:
    assert sorted(p.name for p in exported.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    original = vanseg.load_model(checkpoint)
    loaded = vanseg.from_pretrained(exported)
    assert not loaded.training
    assert torch.equal(_logits(original), _logits(loaded))


def test_config_json_holds_the_metadata(checkpoint: Path, exported: Path) -> None:
    config = json.loads((exported / "config.json").read_text())
    assert config["vanseg_format"] == 1
    assert config["num_classes"] == K and config["family"] == "light_ham"
    assert config["class_names"] == [f"class_{i}" for i in range(K)]
    assert len(config["palette"]) == K and config["mean"] == [123.675, 116.28, 103.53]
    assert config["test_protocol"]["base_scale"] == [2048, 512]
    assert config["test_protocol"]["size_divisor"] == 32
    assert config["model"]["head"]["num_classes"] == K
    assert config["id2label"] == {str(i): f"class_{i}" for i in range(K)}
    assert config["label2id"] == {f"class_{i}": i for i in range(K)}
    ckpt = torch.load(checkpoint, weights_only=True)
    assert ModelMeta.from_dict(config) == meta_of(ckpt)


def test_loading_uses_no_pickle(exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("pickle was used")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    seg = vanseg.Segmenter.from_pretrained(exported, eval_seed=0, device="cpu")
    assert seg.classes == tuple(f"class_{i}" for i in range(K))
    # The safetensors layout: an 8-byte little-endian length, a JSON header, raw tensor bytes.
    data = (exported / "model.safetensors").read_bytes()
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    assert header["decode_head.conv_seg.weight"]["shape"][0] == K


def test_segmenter_from_pretrained_equals_from_checkpoint(checkpoint: Path, exported: Path):
    options = {"inference": {"base_scale": None}, "eval_seed": 0, "device": "cpu"}
    rgb = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    a = vanseg.Segmenter.from_checkpoint(checkpoint, **options)(rgb, probs=True)
    b = vanseg.Segmenter.from_pretrained(exported, **options)(rgb, probs=True)
    np.testing.assert_array_equal(a.probs, b.probs)
    np.testing.assert_array_equal(a.palette, b.palette)


def test_export_refuses_to_overwrite(checkpoint: Path, exported: Path) -> None:
    before = (exported / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(SystemExit) as err:
        export.main([f"ckpt_path={checkpoint}", "format=safetensors", f"output={exported}"])
    assert err.value.code == 2
    assert (exported / "model.safetensors").stat().st_mtime_ns == before
    export.main(
        [f"ckpt_path={checkpoint}", "format=safetensors", f"output={exported}", "overwrite=true"]
    )
    assert sorted(p.name for p in exported.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]


def test_default_output_folder(checkpoint: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "mine.ckpt"
    ckpt.write_bytes(checkpoint.read_bytes())
    export.main([f"ckpt_path={ckpt}", "format=safetensors"])
    assert (tmp_path / "mine-safetensors" / "model.safetensors").is_file()


def test_bad_folders_are_named(exported: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="has no config.json.*format=safetensors"):
        load_pretrained(empty)
    with pytest.raises(CheckpointError, match="neither an existing folder nor a Hub model id"):
        load_pretrained(tmp_path / "missing" / "deeper" / "folder")
    with pytest.raises(CheckpointError, match="is a file"):
        load_pretrained(exported / "config.json")
    # Weights for 4 classes with a config that says 6: every mis-shaped key is listed.
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "model.safetensors").write_bytes((exported / "model.safetensors").read_bytes())
    config = json.loads((exported / "config.json").read_text())
    six = ModelMeta.from_model_and_data(_model_cfg(6)).to_dict()
    (wrong / "config.json").write_text(json.dumps({**config, **six}))
    with pytest.raises(CheckpointError, match="mis-shaped.*decode_head.conv_seg.weight"):
        load_pretrained(wrong)
    (wrong / "config.json").write_text(json.dumps({**config, "vanseg_format": 99}))
    with pytest.raises(CheckpointError, match="vanseg_format=99.*upgrade vanseg"):
        load_pretrained(wrong)


def test_hub_id_offline_gives_a_clear_error(tmp_path: Path) -> None:
    # Only the local cache is consulted (no network): the id is not there.
    with pytest.raises(CheckpointError, match="could not get the Hub model 'someone/van-seg'"):
        vanseg.from_pretrained("someone/van-seg", cache_dir=tmp_path, local_files_only=True)
