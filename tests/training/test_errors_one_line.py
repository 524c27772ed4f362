"""Errors that used to be tracebacks end in one line with exit status 2 (issue 19.12)."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vanseg
from tests.training.test_train import _run
from vanseg.checkpoint import file as checkpoint_file
from vanseg.checkpoint.metadata import ModelMeta
from vanseg.config.checks import check_devices_exist, check_train_config
from vanseg.config.compose import compose_config, config_dir, model_config
from vanseg.errors import CheckpointError, ConfigError
from vanseg.training import signals
from vanseg.utils.cli import user_errors

ROOT = config_dir().parent


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("data.eval_scale=[0,0]", "data.eval_scale=[0, 0] must be two positive integers"),
        ("optimizer.weight_decay=-1", "optimizer.weight_decay=-1 must be a number >= 0"),
        ("trainer.precision=bogus", "trainer.precision='bogus' must be one of 32|"),
        ("data.ignore_index=300", "data.ignore_index=300 must be an integer in 0..255"),
        ("data.ignore_index=3", "data.ignore_index=3 is a class index"),
        ("data.class_names=[a,b]", "data.class_names has 2 names but data.num_classes=150"),
        ("module.aux_weight=abc", "module.aux_weight='abc' must be a number >= 0"),
        ("scheduler.warmup_steps=-5", "scheduler.warmup_steps=-5 must be an integer >= 0"),
    ],
)
def test_invalid_values_are_refused_before_any_work(override: str, named: str) -> None:
    with pytest.raises(ConfigError, match=rf"^invalid option value\(s\): .*{_re(named)}"):
        check_train_config(compose_config([override]), gpus=0)


def _re(text: str) -> str:
    import re

    return re.escape(text)


def test_a_gpu_accelerator_without_a_gpu_says_to_use_the_cpu() -> None:
    with pytest.raises(ConfigError, match=r"trainer\.accelerator=gpu but this machine has no GPU"):
        check_devices_exist({"accelerator": "gpu", "devices": 1}, gpus=0)


def test_a_typo_in_an_override_key_exits_2_with_hydras_text(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "train.py", "trainer.max_stepz=3"], cwd=ROOT, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("train.py: error: Could not override 'trainer.max_stepz'.")


def test_a_full_disk_during_a_save_stops_with_one_line_and_keeps_the_last_checkpoint(
    fast_train_overrides, tmp_path, monkeypatch, caplog
) -> None:
    real_save = torch.save
    calls = {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:  # step 2 (periodic + last) is saved; the disk fills at step 4
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_file.torch, "save", save)
    with (
        caplog.at_level("ERROR", logger="vanseg"),
        pytest.raises(signals.CheckpointWriteError) as e,
    ):
        _run(fast_train_overrides)
    assert "No space left on device" in str(e.value) and "\n" not in str(e.value)
    assert any("cannot write checkpoint" in r.getMessage() for r in caplog.records)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2  # the earlier checkpoint is intact and resumable
    assert not list((tmp_path / "checkpoints").glob(".*.tmp"))
    assert "No space left" in json.loads((tmp_path / "results.json").read_text())["stopped"]


def test_a_read_only_output_folder_is_one_line(capsys) -> None:
    @user_errors("predict.py")
    def task() -> None:
        raise PermissionError(errno.EACCES, "Permission denied", "/data/out/labels/a.png")

    with pytest.raises(SystemExit) as exit_info:
        task()
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("predict.py: error: cannot write /data/out/labels/a.png: Permission")


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    cfg = model_config(compose_config(["backbone=van_test", "head=fpn", "data.num_classes=4"]))
    folder = tmp_path_factory.mktemp("export") / "model"
    model = vanseg.build_model_from_config(cfg)
    vanseg.save_pretrained(model, ModelMeta.from_model_and_data(cfg), folder)
    return folder


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.to(torch.int32), r"wrong kind of dtype \(.*int32 vs model torch\.float32"),
        (lambda t: t.bool(), r"wrong kind of dtype \(.*bool vs model torch\.float32"),
        (lambda t: t.clone().fill_(float("nan")), "holds NaN or infinite values in 1 tensor"),
    ],
)
def test_safetensors_with_int_bool_or_nan_weights_are_refused(
    export, tmp_path, change, message
) -> None:
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "config.json").write_bytes((export / "config.json").read_bytes())
    state = load_file(str(export / "model.safetensors"))
    key = next(k for k, v in state.items() if k.endswith("conv_seg.weight"))
    state[key] = change(state[key])
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises((CheckpointError, vanseg.checkpoint.hub.CheckpointError), match=message):
        vanseg.from_pretrained(folder)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("pretrained", "line"),
    [
        (None, "train.py: error: ImageNet-pretrained backbone weights not found at "),
        ("van_tiny_754", "train.py: error: van_tiny_754: van_tiny_754.pth.tar is not in the cache"),
    ],
)
def test_missing_pretrained_weights_end_in_one_line_in_stderr_and_train_log(
    tmp_path: Path, pretrained: str | None, line: str
) -> None:
    """A paper recipe without its pretrained/ file, and a name offline (tests/conftest.py).

    The error is raised inside hydra.utils.instantiate, which wraps it (issue 21).
    """
    run = tmp_path / "run"
    args = ["backbone=van_tiny", "head=light_ham", "trainer=cpu", "data=synthetic"]
    args += [f"paths.root_dir={tmp_path}", f"hydra.run.dir={run}"]
    args += [f"backbone.pretrained={pretrained}"] if pretrained else []
    proc = subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [x for x in proc.stderr.splitlines() if "error" in x.lower()]
    assert len(errors) == 1 and errors[0].startswith(line), proc.stderr[-2000:]
    assert "python -m vanseg.tools.weights get van_tiny_754" in errors[0]
    assert errors[0] in (run / "train.log").read_text()
