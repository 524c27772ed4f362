"""The Lightning loggers of a training run, built from the ``logger`` config group."""

from __future__ import annotations

import logging
import netrc
import os
from collections.abc import Mapping
from typing import Any

from hydra.utils import get_class, instantiate
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from vanseg.training.run_dir import fresh_csv_version

__all__ = ["build_loggers"]

log = logging.getLogger("vanseg")


def _wandb_credentials() -> bool:
    """Whether wandb could log in: ``WANDB_API_KEY`` or a ``~/.netrc`` entry (``wandb login``)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def build_loggers(nodes: Mapping[str, Any] | None, wandb_run_id: str | None) -> list[Any]:
    """The configured Lightning loggers (``logger`` group), each told what vanseg knows.

    * a CSV logger of a run resumed in its own folder gets a fresh version (a new file);
    * a wandb logger with ``offline: auto`` goes online only with credentials, and a resumed
      run continues its wandb run (``wandb_run_id`` from the checkpoint).

    The kind is the class that ``_target_`` names (a subclass counts), not its spelling.
    """
    loggers = []
    for name, node in (nodes or {}).items():
        if node is None:
            continue
        kwargs: dict[str, Any] = {}
        kind = get_class(node._target_)
        if issubclass(kind, CSVLogger) and isinstance(node.get("version"), str):
            # a run resumed in its own folder gets a new CSV file
            kwargs["version"] = fresh_csv_version(node.save_dir, node.name, node.version)
        if issubclass(kind, WandbLogger):
            if node.offline == "auto":
                kwargs["offline"] = not _wandb_credentials()
            if wandb_run_id:
                kwargs.update(id=wandb_run_id, resume="allow")
        logger = instantiate(node, **kwargs)
        if isinstance(logger, WandbLogger):
            _drop_unset_anonymous(logger)
        loggers.append(logger)
        log.debug("logger %s", name)
    return loggers


def _drop_unset_anonymous(logger: WandbLogger) -> None:
    """Lightning passes ``anonymous=None`` to ``wandb.init``, which warns about the deprecated
    setting even when unset; Lightning keeps those arguments in a private dict (as of 2.x)."""
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and init.get("anonymous") is None:
        init.pop("anonymous", None)
