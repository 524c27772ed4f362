"""Converting original mmseg checkpoints: every key mapped, same logits, clear errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

import vanseg
from tests.models import mmseg_reference as ref
from vanseg.errors import CheckpointError
from vanseg.tools.convert import convert, main

# docs/reference.md §2: state-dict entries of each head (decode + auxiliary + neck).
HEAD_ENTRIES = {
    "light_ham": 13,
    "light_ham_d256": 13,
    "hamnet": 16 + 5,
    "upernet": 74 + 8,
    "fpn": 16 + 44,
}


@pytest.mark.parametrize("head", list(HEAD_ENTRIES))
def test_constructed_checkpoints_have_the_reference_entry_counts(head: str) -> None:
    sd = ref.original_checkpoint("van_tiny", head)["state_dict"]
    assert sum(k.startswith("backbone.") for k in sd) == 400
    assert sum(not k.startswith("backbone.") for k in sd) == HEAD_ENTRIES[head]


@pytest.mark.parametrize(
    ("size", "head", "hw"),
    [
        ("van_tiny", "light_ham", (64, 96)),
        ("van_tiny", "light_ham_d256", (64, 64)),
        ("van_small", "light_ham", (64, 64)),
        ("van_tiny", "hamnet", (64, 64)),
        ("van_tiny", "upernet", (64, 64)),
        ("van_tiny", "fpn", (96, 64)),
    ],
)
def test_converted_checkpoint_gives_the_original_logits(
    tmp_path: Path, size: str, head: str, hw: tuple[int, int]
) -> None:
    ckpt = ref.original_checkpoint(size, head)
    src, dst = tmp_path / "orig.pth", tmp_path / "conv.ckpt"
    torch.save(ckpt, src)
    main([str(src), str(dst), f"backbone={size}", f"head={head}"])
    model = vanseg.load_model(dst)
    assert not model.training
    images = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.manual_seed(7)
        theirs = ref.segmentor_forward(images, ckpt["state_dict"], size, head)
        torch.manual_seed(7)
        ours = model(images)
    assert ours.shape == (1, 150, *hw)
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_num_classes_is_read_from_the_checkpoint(tmp_path: Path) -> None:
    ckpt = ref.original_checkpoint("van_tiny", "light_ham")
    sd = ckpt["state_dict"]
    sd["decode_head.conv_seg.weight"] = sd["decode_head.conv_seg.weight"][:19]
    sd["decode_head.conv_seg.bias"] = sd["decode_head.conv_seg.bias"][:19]
    torch.save(ckpt, tmp_path / "a.pth")
    convert(tmp_path / "a.pth", tmp_path / "a.ckpt", ["backbone=van_tiny", "head=light_ham"])
    assert vanseg.load_model(tmp_path / "a.ckpt").num_classes == 19


def _save_with(tmp_path: Path, edit) -> Path:
    ckpt = ref.original_checkpoint("van_tiny", "light_ham")
    edit(ckpt["state_dict"])
    path = tmp_path / "bad.pth"
    torch.save(ckpt, path)
    return path


def test_missing_key_is_an_error_listing_it(tmp_path: Path) -> None:
    src = _save_with(tmp_path, lambda sd: sd.pop("backbone.block2.1.mlp.fc1.bias"))
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\): backbone.stages.1.blocks.1"):
        convert(src, tmp_path / "o.ckpt", ["backbone=van_tiny", "head=light_ham"])
    assert not (tmp_path / "o.ckpt").exists()


def test_unmapped_key_is_an_error_listing_it(tmp_path: Path) -> None:
    src = _save_with(tmp_path, lambda sd: sd.update({"decode_head.extra.weight": torch.ones(1)}))
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\): decode_head.extra.weight"):
        convert(src, tmp_path / "o.ckpt", ["backbone=van_tiny", "head=light_ham"])


def test_wrong_model_choice_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "o.pth"
    torch.save(ref.original_checkpoint("van_tiny", "light_ham"), src)
    with pytest.raises(CheckpointError, match="mis-shaped") as err:
        convert(src, tmp_path / "o.ckpt", ["backbone=van_small", "head=light_ham"])
    assert "backbone/head options" in str(err.value)
    with pytest.raises(CheckpointError, match="missing"):
        convert(src, tmp_path / "o.ckpt", ["backbone=van_tiny", "head=upernet"])


def test_pickled_objects_are_refused_unless_allowed(tmp_path: Path) -> None:
    ckpt = ref.original_checkpoint("van_tiny", "light_ham_d256")
    ckpt["meta"]["args"] = argparse.Namespace(lr=1.0)  # not loadable with weights_only
    src = tmp_path / "pickled.pth"
    torch.save(ckpt, src)
    with pytest.raises(CheckpointError, match="--unsafe-load") as err:
        convert(src, tmp_path / "o.ckpt", ["backbone=van_tiny", "head=light_ham_d256"])
    assert "arbitrary code" in str(err.value)
    main(
        [
            str(src),
            str(tmp_path / "o.ckpt"),
            "backbone=van_tiny",
            "head=light_ham_d256",
            "--unsafe-load",
        ]
    )
    assert vanseg.load_model(tmp_path / "o.ckpt").num_classes == 150


def test_load_model_explains_a_file_without_config(tmp_path: Path) -> None:
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="vanseg.tools.convert"):
        vanseg.load_model(path)
    with pytest.raises(FileNotFoundError, match="nothing.ckpt"):
        vanseg.load_model(tmp_path / "nothing.ckpt")


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_convert_never_replaces_its_source_and_refuses_existing_output(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("VANSEG_DEBUG", raising=False)
    src = tmp_path / "self.pth"
    torch.save(ref.original_checkpoint("van_tiny", "light_ham"), src)
    before = _sha(src)
    model = ["backbone=van_tiny", "head=light_ham"]
    for extra in ([], ["--overwrite"]):  # the source is refused even with --overwrite
        with pytest.raises(SystemExit) as exit_info:
            main([str(src), str(src), *model, *extra])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m vanseg.tools.convert: error: destination ")
        assert str(src) in err and "Traceback" not in err
    assert _sha(src) == before
    dst = tmp_path / "out.ckpt"
    dst.write_bytes(b"keep me")
    with pytest.raises(SystemExit):
        main([str(src), str(dst), *model])
    assert "--overwrite" in capsys.readouterr().err and dst.read_bytes() == b"keep me"
    main([str(src), str(dst), *model, "--overwrite"])
    assert vanseg.load_model(dst).num_classes == 150
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ckpt", "self.pth"]  # no temp left


def test_convert_of_an_empty_file_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("VANSEG_DEBUG", raising=False)
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "empty.pth"), str(tmp_path / "o.ckpt"), "backbone=van_tiny"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'empty.pth'} is empty (0 bytes)" in err
    assert not (tmp_path / "o.ckpt").exists()


def test_save_model_refuses_an_existing_file(tmp_path: Path) -> None:
    from vanseg.errors import OutputExistsError

    model_cfg = vanseg.config.compose.model_config(
        vanseg.config.compose.compose_config(["backbone=van_test", "backbone.pretrained=null"])
    )
    model = vanseg.build_model_from_config(model_cfg)
    path = tmp_path / "m.ckpt"
    path.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="overwrite=true"):
        vanseg.save_model(model, model_cfg, path)
    assert path.read_bytes() == b"old"
    vanseg.save_model(model, model_cfg, path, overwrite=True)
    assert vanseg.load_model(path).num_classes == 150
