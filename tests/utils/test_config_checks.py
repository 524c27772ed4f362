"""Config values are checked right after composition, before any data or model work."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from vanseg.config.checks import check_devices_exist, check_train_config
from vanseg.config.compose import compose_config
from vanseg.errors import ConfigError


def test_bad_types_and_ranges_are_listed_together() -> None:
    cfg = compose_config(["trainer.max_steps=abc", "data.batch_size_per_gpu=0"])
    with pytest.raises(ConfigError) as err:
        check_train_config(cfg, gpus=0)
    message = str(err.value)
    assert "trainer.max_steps='abc' must be a positive integer" in message
    assert "data.batch_size_per_gpu=0 must be a positive integer" in message


def test_the_published_recipes_pass() -> None:
    for overrides in (["backbone=van_base", "head=light_ham"], ["experiment=upernet_van_tiny"]):
        check_train_config(compose_config(overrides), gpus=8)


def test_devices_without_gpus_point_to_ddp_cpu() -> None:
    cfg = compose_config(["backbone=van_base", "head=light_ham", "trainer.devices=8"])
    with pytest.raises(ConfigError, match=r"this machine has 0\. .*trainer=ddp_cpu"):
        check_train_config(cfg, gpus=0)
    check_train_config(compose_config(["trainer=ddp_cpu", "trainer.devices=8"]), gpus=0)
    check_devices_exist(OmegaConf.create({"accelerator": "auto", "devices": 1}), gpus=0)
    with pytest.raises(ConfigError, match="asks for 4 GPUs but this machine has 2"):
        check_devices_exist(OmegaConf.create({"accelerator": "gpu", "devices": 4}), gpus=2)


def test_unknown_option_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Could not find 'backbone/van_huge'"):
        compose_config(["backbone=van_huge"])


def test_train_py_stops_before_data_with_exit_2(tmp_path: Path, capsys, monkeypatch) -> None:
    """The config error wins over a missing dataset: nothing is read or built first."""
    import train as train_cli

    monkeypatch.delenv("VANSEG_DEBUG", raising=False)
    cfg = compose_config(
        [
            "data=ade20k",
            f"data.root={tmp_path}/no-such-dataset",
            "trainer.max_steps=abc",
            f"paths.output_dir={tmp_path}/run",
        ]
    )
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main.__wrapped__(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("train.py: error: invalid option value(s): trainer.max_steps='abc'")
    assert "no-such-dataset" not in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
