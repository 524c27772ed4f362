"""Composing the Hydra configuration outside ``@hydra.main`` (tools, notebooks, tests).

Where the ``conf/`` tree is found, first match wins:

1. ``$VANSEG_CONFIG_DIR`` (a folder with ``train.yaml``);
2. the ``conf/`` beside ``src/`` when vanseg runs from a source checkout (``PYTHONPATH=src`` or
   an editable install), so a worktree always uses its own configuration;
3. the packaged copy, the module ``vanseg.conf`` (``pkg://vanseg.conf`` for Hydra), which the
   build maps from the repository's top-level ``conf/`` (see ``setup.py``).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vanseg.config.trust import MODEL_KEYS
from vanseg.errors import USER_ERROR_EXIT, ConfigError, InputNotFoundError
from vanseg.utils.cli import format_error

__all__ = [
    "config_dir",
    "hydra_config_path",
    "compose_config",
    "model_config",
    "NO_PRETRAINED",
    "PACKAGED_CONFIG",
    "refuse_bad_overrides",
    "task_overrides",
]

#: Override that builds a model without loading ImageNet weights (tools need none).
NO_PRETRAINED = "backbone.pretrained=null"

#: Top-level config nodes that describe the model (stored in every checkpoint).

#: The module that holds the installed configuration tree.
PACKAGED_CONFIG = "vanseg.conf"

#: The source checkout's ``conf/`` (``<repo>/src/vanseg/config/compose.py`` -> ``<repo>/conf``).
_SOURCE_CONFIG = Path(__file__).resolve().parents[3] / "conf"


def _is_config_dir(path: Path) -> bool:
    return (path / "train.yaml").is_file()


def _packaged_config_dir() -> Path | None:
    """The folder of ``vanseg.conf`` on disk, or None when it is not installed."""
    try:
        if importlib.util.find_spec(PACKAGED_CONFIG) is None:
            return None
        root = importlib.resources.files(PACKAGED_CONFIG)
    except (ModuleNotFoundError, TypeError, ValueError):
        return None
    path = Path(str(root))
    return path if _is_config_dir(path) else None


def _source_checkout() -> bool:
    """Whether vanseg is imported from ``<repo>/src`` next to a ``<repo>/conf`` tree."""
    return _is_config_dir(_SOURCE_CONFIG) and (_SOURCE_CONFIG / "__init__.py").is_file()


def config_dir() -> Path:
    """The configuration folder (see the module docstring for the search order)."""
    env = os.environ.get("VANSEG_CONFIG_DIR")
    if env:
        path = Path(env).expanduser().resolve()
        if not _is_config_dir(path):
            raise InputNotFoundError(
                f"VANSEG_CONFIG_DIR={env} has no train.yaml. Point it at a vanseg conf/ folder, "
                "or unset it to use the installed configuration."
            )
        return path
    if _source_checkout():
        return _SOURCE_CONFIG
    packaged = _packaged_config_dir()
    if packaged is not None:
        return packaged
    raise InputNotFoundError(
        f"vanseg's configuration ({PACKAGED_CONFIG}) is not installed and no conf/ folder was "
        f"found at {_SOURCE_CONFIG}. Reinstall vanseg (`pip install vanseg-*.whl`, or "
        "`pip install -e .` in a clone), or point VANSEG_CONFIG_DIR at a conf/ folder."
    )


def hydra_config_path() -> str:
    """``config_path`` for ``@hydra.main``: ``pkg://vanseg.conf`` when the packaged tree is the
    one :func:`config_dir` picks, else that folder's absolute path."""
    path = config_dir()
    packaged = _packaged_config_dir()
    if packaged is not None and packaged.resolve() == path.resolve():
        return f"pkg://{PACKAGED_CONFIG}"
    return str(path)


def compose_config(
    overrides: Sequence[str] = (), config_name: str = "train", return_hydra_config: bool = False
) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with command-line style overrides.

    With ``return_hydra_config`` the result also has the ``hydra`` node (e.g. the chosen
    group options under ``hydra.runtime.choices``).

    Raises:
        ConfigError: An unknown option, key or group choice (Hydra's message, one line).
    """
    source = hydra_config_path()
    context = (
        initialize_config_module(PACKAGED_CONFIG, version_base="1.3")
        if source.startswith("pkg://")
        else initialize_config_dir(source, version_base="1.3")
    )
    with context:
        try:
            return compose(
                config_name, overrides=list(overrides), return_hydra_config=return_hydra_config
            )
        except (HydraException, OmegaConfBaseException) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ConfigError(
                f"cannot compose {config_name}.yaml with {list(overrides)}: {first}"
            ) from err


def model_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved model part of a config: ``{backbone, neck, head, aux_head}`` as plain dicts."""
    return {
        key: OmegaConf.to_container(cfg[key], resolve=True) if cfg.get(key) is not None else None
        for key in MODEL_KEYS
    }


def refuse_bad_overrides(prog: str, config_name: str, argv: Sequence[str] | None = None) -> None:
    """Compose the command line's overrides once before Hydra runs the task.

    Hydra reports an unknown key (``Key 'x' is not in struct``) or group option and exits with
    status 1, like a crash. Here the same text ends the command with vanseg's prefix and exit
    status 2. Hydra's own flags (``-m``, ``--cfg``, ...) are left to Hydra.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg.startswith("-") for arg in args):
        return
    try:
        compose_config(args, config_name=config_name, return_hydra_config=True)
    except ConfigError as err:
        hydra_text = str(err.__cause__ or err).strip()  # Hydra's whole message, as Hydra says it
        print(format_error(prog, hydra_text), file=sys.stderr, flush=True)
        raise SystemExit(USER_ERROR_EXIT) from None


def task_overrides() -> list[str]:
    """The command line's overrides of the running Hydra job (``[]`` outside ``@hydra.main``)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []
