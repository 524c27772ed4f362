"""Bad input at the entry points: found before step 0, one message, exit status 2."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from vanseg.config.compose import compose_config
from vanseg.tasks.train import train
from vanseg.training.resume import resolve_ckpt_path


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _ade_overrides(root: Path, fast: list[str]) -> list[str]:
    kept = [o for o in fast if not o.startswith("data")]
    return [
        *kept,
        "data=ade20k",
        f"data.root={root}",
        "data.num_classes=5",
        "data.class_names=null",
        "data.palette=null",
        "data.num_workers=0",
        "data.scale=[256,64]",
        "data.crop_size=[64,64]",
        "data.eval_scale=[256,64]",
        "backbone.pretrained=null",
    ]


def test_train_lists_every_broken_file_before_step_0(
    make_ade_layout, fast_train_overrides, tmp_path: Path, capsys, monkeypatch
) -> None:
    import train as train_cli

    monkeypatch.delenv("VANSEG_DEBUG", raising=False)
    root = make_ade_layout(tmp_path / "ade")
    bad_train = root / "images/training/img_0002.jpg"
    bad_train.write_bytes(bad_train.read_bytes()[:300])  # truncated: would crash at a late step
    bad_val = root / "annotations/validation/img_0001.png"
    bad_val.write_bytes(b"")  # zero-byte: would crash at the first validation
    before = _tree(root)
    cfg = compose_config(_ade_overrides(root, fast_train_overrides))
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main.__wrapped__(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("train.py: error: The dataset at ") and "2 problem(s)" in err
    assert str(bad_train) in err and str(bad_val) in err and "Traceback" not in err
    assert not (tmp_path / "checkpoints").exists()  # nothing trained
    assert _tree(root) == before


def test_eval_and_predict_name_an_empty_checkpoint(tmp_path: Path, capsys, monkeypatch) -> None:
    import eval as eval_cli
    import predict as predict_cli

    monkeypatch.delenv("VANSEG_DEBUG", raising=False)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    (tmp_path / "in.png").write_bytes(b"")
    runs = (
        (eval_cli, "eval", [f"ckpt_path={empty}", f"output={tmp_path}/eval"]),
        (
            predict_cli,
            "predict",
            [f"ckpt_path={empty}", f"input={tmp_path}/in.png", f"output={tmp_path}/pred"],
        ),
    )
    for cli, name, overrides in runs:
        with pytest.raises(SystemExit) as exit_info:
            cli.main.__wrapped__(compose_config(overrides, config_name=name))
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"{name}.py: error: {empty} is empty (0 bytes); it was probably cut short "
            "while being written or copied. Copy or download it again, or use another "
            "checkpoint."
        ]


def test_ckpt_path_last_resolves_past_a_truncated_last_ckpt(tmp_path: Path) -> None:
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    torch.save({"global_step": 30}, ckpts / "step_000030.ckpt")
    os.utime(ckpts / "step_000030.ckpt", (1_000, 1_000))
    torch.save({"global_step": 40}, ckpts / "last.ckpt")
    data = (ckpts / "last.ckpt").read_bytes()
    (ckpts / "last.ckpt").write_bytes(data[: len(data) - 100])
    runs = tmp_path / "train" / "runs"
    assert resolve_ckpt_path("last", tmp_path / "run", runs) == str(ckpts / "step_000030.ckpt")


@pytest.mark.slow
def test_resume_last_from_the_newest_intact_checkpoint(fast_train_overrides, tmp_path) -> None:
    first = train(compose_config(fast_train_overrides))
    ckpts = tmp_path / "checkpoints"
    last = ckpts / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # cut short, e.g. by a full disk
    result = train(compose_config([*fast_train_overrides, "trainer.max_steps=6", "ckpt_path=last"]))
    assert first["steps"] == 4 and result["steps"] == 6  # resumed at step 4 (step_000004.ckpt)
