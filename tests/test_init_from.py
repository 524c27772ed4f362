"""``model.init_from`` / ``vanseg.build_model(init_from=...)``: what loads, what stays fresh."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vanseg
from tests.models import mmseg_reference as ref
from vanseg.checkpoint import init_from as init_from_module
from vanseg.checkpoint.file import save_model
from vanseg.checkpoint.init_from import init_model_from
from vanseg.checkpoint.mmseg import convert_state_dict
from vanseg.config.checks import check_train_config
from vanseg.config.compose import compose_config
from vanseg.errors import CheckpointError, ConfigError, InputNotFoundError
from vanseg.models.build import compose_model_config
from vanseg.tools.export_safetensors import export_safetensors

CLASSIFIER = ("decode_head.conv_seg.weight", "decode_head.conv_seg.bias")
SMALL = ["head.channels=32"]
AUX = [
    "+aux_head._target_=vanseg.models.FCNHead",
    "+aux_head._partial_=true",
    "+aux_head.num_classes=${data.num_classes}",
    "+aux_head.channels=16",
    "+aux_head.in_index=2",
]


def _source(tmp_path: Path, classes: int = 8, aux: bool = False) -> tuple[Path, dict]:
    """A van_test + Light-Ham checkpoint with non-default weights (every tensor moved)."""
    overrides = [*SMALL, *AUX] if aux else SMALL
    cfg = compose_model_config("van_test", "light_ham", classes, overrides=overrides)
    model = vanseg.build_model_from_config(cfg)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.25)
    path = tmp_path / "source.ckpt"
    save_model(model, cfg, path)
    return path, {k: v.clone() for k, v in model.state_dict().items()}


def _check_fine_tuned(model, fresh, source: dict, report) -> None:
    state = model.state_dict()
    for key in CLASSIFIER:  # the new model's own initialisation, not the source's
        assert torch.equal(state[key], fresh.state_dict()[key])
        assert state[key].shape[0] == 5
    others = [k for k in state if k not in CLASSIFIER]
    for key in others:
        assert torch.equal(state[key], source[key]), key
    assert sorted(report.reinitialised) == sorted(CLASSIFIER)
    assert len(report.loaded) == len(others) and report.ignored == []


def _build(init_from=None):
    torch.manual_seed(0)
    return vanseg.build_model("van_test", "light_ham", 5, overrides=SMALL, init_from=init_from)


def test_from_a_vanseg_checkpoint(tmp_path: Path, caplog) -> None:
    path, source = _source(tmp_path)
    fresh = _build()
    with caplog.at_level("INFO", logger="vanseg"):
        torch.manual_seed(0)
        model = vanseg.build_model("van_test", "light_ham", 5, overrides=SMALL)
        report = init_model_from(model, path)
    _check_fine_tuned(model, fresh, source, report)
    assert "re-initialised" in caplog.text and f"{len(report.loaded)}" in caplog.text
    # the public name builds, then initialises, with the same result
    assert all(torch.equal(a, b) for a, b in zip(
        _build(path).state_dict().values(), model.state_dict().values(), strict=True))  # fmt: skip


def test_from_an_export_folder(tmp_path: Path) -> None:
    path, source = _source(tmp_path)
    folder = export_safetensors(path, tmp_path / "export")
    model = _build(folder)
    report = init_model_from(model, folder)
    _check_fine_tuned(model, _build(), source, report)


def test_from_a_hub_id(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub

    path, source = _source(tmp_path)
    folder = export_safetensors(path, tmp_path / "export")
    asked = []

    def fake_download(repo_id, **kwargs):
        asked.append(repo_id)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    model = _build()
    report = init_model_from(model, "someone/van-test-synthetic")
    assert asked == ["someone/van-test-synthetic"]
    _check_fine_tuned(model, _build(), source, report)


def test_from_an_original_mmseg_checkpoint(tmp_path: Path) -> None:
    original = ref.original_checkpoint("van_tiny", "light_ham")
    src = tmp_path / "original.pth"
    torch.save(original, src)
    converted = convert_state_dict(original["state_dict"])
    torch.manual_seed(0)
    fresh = vanseg.build_model("van_tiny", "light_ham", 5)
    torch.manual_seed(0)
    model = vanseg.build_model("van_tiny", "light_ham", 5)
    report = init_model_from(model, src)
    _check_fine_tuned(model, fresh, converted, report)


def test_same_classes_load_the_classifier_and_extra_heads_are_ignored(tmp_path: Path) -> None:
    path, source = _source(tmp_path, classes=5, aux=True)
    model = _build()
    report = init_model_from(model, path)
    assert report.reinitialised == []
    assert report.ignored and all(k.startswith("auxiliary_head.") for k in report.ignored)
    assert all(torch.equal(v, source[k]) for k, v in model.state_dict().items())


def test_a_new_aux_classifier_is_fresh(tmp_path: Path) -> None:
    path, _ = _source(tmp_path, classes=5)
    torch.manual_seed(0)
    model = vanseg.build_model("van_test", "light_ham", 5, overrides=[*SMALL, *AUX])
    # an aux head the source lacks: its classifier may be fresh, its convolutions may not
    with pytest.raises(CheckpointError, match=r"missing: auxiliary_head\.convs"):
        init_model_from(model, path)


def test_another_backbone_is_one_error_naming_keys(tmp_path: Path) -> None:
    path, _ = _source(tmp_path)
    model = vanseg.build_model("van_test", "light_ham", 5, overrides=["head.channels=64"])
    with pytest.raises(CheckpointError, match=r"mis-shaped: decode_head\.") as err:
        init_model_from(model, path)
    assert "\n" not in str(err.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="model.init_from=.*no such file"):
        init_model_from(_build(), tmp_path / "runs" / "last.ckpt")


def test_an_unknown_name_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a file, folder, Hub id or published name") as e:
        init_model_from(_build(), "no_such_weights")
    assert "\n" not in str(e.value) and "vanseg.tools.weights list" in str(e.value)


def test_a_published_name_goes_through_the_registry(tmp_path: Path, monkeypatch) -> None:
    """``model.init_from=light_ham_van_tiny_ade20k``: the registry's converted checkpoint."""
    path, source = _source(tmp_path)
    asked = []

    def resolve(name: str, kind: str | None = None) -> Path:
        asked.append((name, kind))
        return path

    monkeypatch.setattr(init_from_module, "resolve_weights", resolve)
    fresh = _build()
    torch.manual_seed(0)
    model = vanseg.build_model("van_test", "light_ham", 5, overrides=SMALL)
    report = init_model_from(model, "light_ham_van_tiny_ade20k")
    assert asked == [("light_ham_van_tiny_ade20k", "segmentation")]
    _check_fine_tuned(model, fresh, source, report)


def test_init_from_and_resume_together_are_refused(tmp_path: Path) -> None:
    cfg = compose_config(["model.init_from=a.ckpt", "ckpt_path=b.ckpt"])
    with pytest.raises(ConfigError, match="model.init_from=a.ckpt") as err:
        check_train_config(cfg, gpus=0)
    assert "\n" not in str(err.value)


def test_config_accepts_init_from_and_the_model_config_ignores_it() -> None:
    from vanseg.config.compose import model_config

    cfg = compose_config(["model.init_from=owner/name", "data.num_classes=150"])
    check_train_config(cfg, gpus=0)
    assert set(model_config(cfg)) == {"backbone", "neck", "head", "aux_head"}
    assert compose_config([]).model.init_from is None
