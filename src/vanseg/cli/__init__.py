"""Installed command-line entry points: ``vanseg-train``, ``vanseg-eval``, ``vanseg-predict``.

Each module holds one Hydra task (``run(cfg)``), shared with the repository's ``train.py``,
``eval.py`` and ``predict.py``, and a ``main()`` for the console script that finds the
configuration with :func:`vanseg.config.compose.hydra_config_path` (``pkg://vanseg.conf`` once
installed). Module names become Hydra job names, so logs are ``train.log`` etc. either way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from vanseg.errors import USER_ERROR_EXIT, VansegError

__all__ = ["launch"]


def launch(task: Callable[[DictConfig], Any], config_name: str) -> None:
    """Run ``task`` under ``@hydra.main`` with the installed (or checkout) configuration."""
    from vanseg.config.compose import hydra_config_path

    try:
        config_path = hydra_config_path()
    except VansegError as err:
        print(f"{Path(sys.argv[0]).name}: error: {err}", file=sys.stderr)
        raise SystemExit(USER_ERROR_EXIT) from err
    from vanseg.config.compose import refuse_bad_overrides

    refuse_bad_overrides(f"vanseg-{config_name}", config_name)  # exit 2 for a typo in a key
    hydra.main(version_base="1.3", config_path=config_path, config_name=config_name)(task)()
