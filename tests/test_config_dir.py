"""Where the configuration tree is found (source checkout, $VANSEG_CONFIG_DIR, package)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vanseg.config import compose as config
from vanseg.errors import VansegError

REPO = Path(__file__).resolve().parents[1]


def test_source_checkout_uses_its_own_conf(monkeypatch) -> None:
    monkeypatch.delenv("VANSEG_CONFIG_DIR", raising=False)
    assert config.config_dir() == REPO / "conf"
    assert (REPO / "conf" / "__init__.py").is_file()  # Hydra's pkg:// needs it


def test_env_override_and_its_error(monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "train.yaml").write_text("seed: 0\n")
    monkeypatch.setenv("VANSEG_CONFIG_DIR", str(tmp_path))
    assert config.config_dir() == tmp_path
    assert config.hydra_config_path() == str(tmp_path)
    monkeypatch.setenv("VANSEG_CONFIG_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(VansegError, match=r"VANSEG_CONFIG_DIR=.*nowhere has no train.yaml"):
        config.config_dir()


def test_no_tree_anywhere_is_a_clear_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VANSEG_CONFIG_DIR", raising=False)
    monkeypatch.setattr(config, "_SOURCE_CONFIG", tmp_path / "conf")
    monkeypatch.setattr(config, "_packaged_config_dir", lambda: None)
    with pytest.raises(config.InputNotFoundError, match="Reinstall vanseg"):
        config.config_dir()


def test_packaged_tree_is_used_through_pkg(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VANSEG_CONFIG_DIR", raising=False)
    monkeypatch.setattr(config, "_SOURCE_CONFIG", tmp_path / "conf")  # not a checkout
    monkeypatch.setattr(config, "_packaged_config_dir", lambda: REPO / "conf")
    assert config.config_dir() == REPO / "conf"
    assert config.hydra_config_path() == "pkg://vanseg.conf"
