"""ImageNet weights of the original VAN classification repository into the backbone."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

import vanseg
from tests.models import mmseg_reference as ref
from vanseg.errors import CheckpointError
from vanseg.models import van_tiny
from vanseg.models.pretrained import load_pretrained_backbone


def _classification_checkpoint(size: str = "van_tiny", args: bool = False) -> dict:
    """The timm CheckpointSaver layout: weights under 'state_dict', classifier included."""
    g = torch.Generator().manual_seed(0)
    sd = ref.backbone_state_dict(size, g, prefix="")
    c4 = ref.SIZES[size][0][-1]
    sd["head.weight"] = torch.randn(1000, c4, generator=g)
    sd["head.bias"] = torch.zeros(1000)
    ckpt = {"epoch": 299, "arch": size, "state_dict": sd}
    if args:
        ckpt["args"] = argparse.Namespace(model=size, lr=1e-3)
    return ckpt


def test_loads_backbone_and_drops_the_classifier(tmp_path: Path) -> None:
    ckpt = _classification_checkpoint()
    torch.save(ckpt, tmp_path / "van_tiny.pth.tar")
    model = van_tiny()
    dropped = load_pretrained_backbone(model, tmp_path / "van_tiny.pth.tar")
    assert dropped == ["head.bias", "head.weight"]
    sd = model.state_dict()
    assert torch.equal(
        sd["stages.2.blocks.4.mlp.fc2.weight"], ckpt["state_dict"]["block3.4.mlp.fc2.weight"]
    )
    assert torch.equal(
        sd["stages.0.patch_embed.norm.running_var"],
        ckpt["state_dict"]["patch_embed1.norm.running_var"],
    )
    assert len(sd) == 400


def test_config_option_loads_the_weights(tmp_path: Path) -> None:
    ckpt = _classification_checkpoint()
    path = tmp_path / "w.pth.tar"
    torch.save(ckpt, path)
    model = vanseg.build_model("van_tiny", "hamnet", overrides=[f"backbone.pretrained={path}"])
    # OS8: the same 3x3 patch-embed weights go into stride-1 convs
    assert model.backbone.stages[3].patch_embed.proj.stride == (1, 1)
    assert torch.equal(
        model.backbone.stages[3].patch_embed.proj.weight,
        ckpt["state_dict"]["patch_embed4.proj.weight"],
    )


def test_missing_and_mis_shaped_keys_are_listed(tmp_path: Path) -> None:
    ckpt = _classification_checkpoint()
    del ckpt["state_dict"]["norm3.bias"]
    del ckpt["state_dict"]["block1.0.layer_scale_1"]
    torch.save(ckpt, tmp_path / "a.pth")
    with pytest.raises(CheckpointError) as err:
        load_pretrained_backbone(van_tiny(), tmp_path / "a.pth")
    assert "2 missing key(s): stages.0.blocks.0.layer_scale_1, stages.2.norm.bias" in str(err.value)

    torch.save(_classification_checkpoint("van_small"), tmp_path / "small.pth")
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load_pretrained_backbone(van_tiny(), tmp_path / "small.pth")


def test_unexpected_key_is_an_error(tmp_path: Path) -> None:
    ckpt = _classification_checkpoint()
    ckpt["state_dict"]["block5.0.attn.proj_1.weight"] = torch.ones(1)
    torch.save(ckpt, tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\): block5.0.attn.proj_1.weight"):
        load_pretrained_backbone(van_tiny(), tmp_path / "a.pth")


def test_full_unpickling_needs_the_explicit_opt_in(tmp_path: Path) -> None:
    torch.save(_classification_checkpoint(args=True), tmp_path / "timm.pth.tar")
    with pytest.raises(CheckpointError, match="backbone.unsafe_load=true") as err:
        van_tiny(pretrained=str(tmp_path / "timm.pth.tar"))
    assert "arbitrary code" in str(err.value)
    model = van_tiny(pretrained=str(tmp_path / "timm.pth.tar"), unsafe_load=True)
    assert model.stages[0].norm.weight.shape == (32,)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        van_tiny(pretrained=str(tmp_path / "nope.pth"))
