"""Composing the Hydra configuration outside ``@hydra.main`` (tools, notebooks, tests)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vanseg.errors import ConfigError

__all__ = ["config_dir", "compose_config", "model_config", "MODEL_KEYS", "NO_PRETRAINED"]

#: Override that builds a model without loading ImageNet weights (tools need none).
NO_PRETRAINED = "backbone.pretrained=null"

#: Top-level config nodes that describe the model (stored in every checkpoint).
MODEL_KEYS = ("backbone", "neck", "head", "aux_head")


def config_dir() -> Path:
    """The ``conf/`` folder: ``$VANSEG_CONFIG_DIR``, else the one beside ``src/``."""
    path = Path(os.environ.get("VANSEG_CONFIG_DIR", Path(__file__).resolve().parents[3] / "conf"))
    if not (path / "train.yaml").is_file():
        raise FileNotFoundError(
            f"vanseg config folder not found at {path}. Install vanseg from its repository "
            "with `pip install -e .`, or point VANSEG_CONFIG_DIR at the repository's conf/."
        )
    return path


def compose_config(
    overrides: Sequence[str] = (), config_name: str = "train", return_hydra_config: bool = False
) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with command-line style overrides.

    With ``return_hydra_config`` the result also has the ``hydra`` node (e.g. the chosen
    group options under ``hydra.runtime.choices``).

    Raises:
        ConfigError: An unknown option, key or group choice (Hydra's message, one line).
    """
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        try:
            return compose(
                config_name, overrides=list(overrides), return_hydra_config=return_hydra_config
            )
        except (HydraException, OmegaConfBaseException) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ConfigError(
                f"cannot compose conf/{config_name}.yaml with {list(overrides)}: {first}"
            ) from err


def model_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved model part of a config: ``{backbone, neck, head, aux_head}`` as plain dicts."""
    return {
        key: OmegaConf.to_container(cfg[key], resolve=True) if cfg.get(key) is not None else None
        for key in MODEL_KEYS
    }
