"""`vanseg.checkpoint.metadata.ModelMeta`: classes, palette, normalisation and test protocol."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

import vanseg
from vanseg.checkpoint.file import read_entry
from vanseg.checkpoint.metadata import ModelMeta, family_of
from vanseg.config.compose import compose_config, model_config
from vanseg.data.classes import ADE20K_PALETTE
from vanseg.errors import CheckpointError
from vanseg.inference.assemble import resolve_inference

RATIOS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]  # ade20k_std.py img_ratios (docs/reference.md §8)


def meta_of(ckpt: dict) -> ModelMeta:
    """What a checkpoint dict says about its model: its entry through the gate, then the meta."""
    return ModelMeta.from_entry(read_entry(ckpt, "checkpoint"), "checkpoint")


def model_cfg(head: str, num_classes: int = 150) -> dict:
    overrides = [f"head={head}", f"data.num_classes={num_classes}", "backbone.pretrained=null"]
    return model_config(compose_config(["backbone=van_test", *overrides]))


@pytest.mark.parametrize(
    ("head", "family"),
    [
        ("light_ham", "light_ham"),
        ("light_ham_d256", "light_ham"),
        ("hamnet", "hamnet"),
        ("upernet", "upernet"),
        ("fpn", "fpn"),
    ],
)
def test_family_and_default_protocol_of_converted_checkpoints(head: str, family: str) -> None:
    """No stored data config: ADE20K names, palette and the family's plain test.py."""
    meta = meta_of({"vanseg": {"model": model_cfg(head)}})
    assert family_of(meta.model) == meta.family == family
    assert meta.num_classes == 150 and meta.class_names[:3] == ("wall", "building", "sky")
    assert meta.palette == tuple(tuple(c) for c in ADE20K_PALETTE)
    assert meta.mean == (123.675, 116.28, 103.53) and meta.std == (58.395, 57.12, 57.375)
    protocol = resolve_inference(meta, {})
    assert protocol.base_scale == (2048, 512) and not protocol.flip
    if family == "hamnet":  # multi-scale without --aug-test, no ResizeToMultiple
        assert list(protocol.scales) == RATIOS and protocol.size_divisor is None
    else:
        assert protocol.scales == (1.0,) and protocol.size_divisor == 32
    assert protocol.describe().startswith(f"test.py default for {family}")
    aug = resolve_inference(meta, {}, "ms_flip")
    assert list(aug.scales) == RATIOS and aug.flip and aug.passes == 12
    assert aug.size_divisor == (None if family == "hamnet" else 32)


def test_train_config_and_round_trip() -> None:
    cfg = compose_config(
        ["backbone=van_test", "head=hamnet", "data=synthetic", "data.eval_scale=[384,96]"]
    )
    data = OmegaConf.to_container(cfg.data, resolve=True)
    meta = ModelMeta.from_model_and_data(model_config(cfg), data)
    assert meta.family == "hamnet" and meta.num_classes == 8 and meta.data_name == "synthetic"
    assert meta.test_protocol["base_scale"] == [384, 96]
    assert meta.class_names[0] == "stripes_0"  # the generator's texture names
    plain = json.loads(json.dumps(meta.to_dict()))
    assert ModelMeta.from_dict(plain) == meta
    stored = {"vanseg": {"model": model_config(cfg), "config": {"data": data}}}
    assert meta_of(stored) == meta


def test_explicit_overrides_win_and_are_named() -> None:
    meta = meta_of({"vanseg": {"model": model_cfg("hamnet")}})
    protocol = resolve_inference(meta, {"scales": [1.0], "size_divisor": 32, "mode": "slide"})
    assert protocol.scales == (1.0,) and protocol.size_divisor == 32 and protocol.mode == "slide"
    assert "with scales=[1.0], size_divisor=32, mode=slide" in protocol.describe()


def test_saved_model_meta_and_errors(tmp_path) -> None:
    cfg = model_cfg("light_ham", num_classes=4)
    path = tmp_path / "m.ckpt"
    vanseg.save_model(vanseg.build_model_from_config(cfg), cfg, path)
    meta = meta_of(torch.load(path, weights_only=True))
    assert meta.class_names == ("class_0", "class_1", "class_2", "class_3")
    assert len(set(meta.palette)) == 4
    with pytest.raises(CheckpointError, match="no vanseg model config"):
        meta_of({"state_dict": {}})
    with pytest.raises(CheckpointError, match="data.num_classes=3"):
        meta.with_data({"name": "x", "num_classes": 3})
    with pytest.raises(CheckpointError, match="4 classes but 2 class names"):
        meta.replace(class_names=("a", "b"))
