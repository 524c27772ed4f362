"""Python API for notebooks and scripts: build a model from the config groups, load one."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from vanseg.models.pretrained import CheckpointError, check_and_load, load_file
from vanseg.models.segmentor import Segmentor
from vanseg.trust import check_model_config
from vanseg.utils.atomic import atomic_path

__all__ = [
    "CKPT_KEY",
    "build_model",
    "build_model_from_config",
    "compose_model_config",
    "load_model",
    "model_from_checkpoint",
    "save_model",
]

log = logging.getLogger(__name__)

#: Key of the vanseg metadata (model config) in every checkpoint written by vanseg.
CKPT_KEY = "vanseg"
CKPT_FORMAT = 1


def build_model_from_config(model_cfg: Mapping[str, Any]) -> Segmentor:
    """Instantiate a :class:`Segmentor` from ``{backbone, neck, head, aux_head}`` nodes."""
    missing = [k for k in ("backbone", "head") if not model_cfg.get(k)]
    if missing:
        raise ValueError(f"model config lacks {missing}; got keys {sorted(model_cfg)}")

    def build(key: str):
        node = model_cfg.get(key)
        return instantiate(node, _convert_="all") if node else None

    return Segmentor(
        build("backbone"), build("head"), neck=build("neck"), aux_head=build("aux_head")
    )


def build_model(
    backbone: str = "van_tiny",
    head: str = "light_ham",
    num_classes: int | None = None,
    pretrained: str | None = None,
    overrides: Sequence[str] = (),
) -> Segmentor:
    """Build a model from the ``conf/`` groups, e.g. ``build_model("van_base", "upernet")``.

    Args:
        backbone: A ``conf/backbone`` option (``van_tiny``..``van_large``, ``van_test``).
        head: A ``conf/head`` option (``light_ham``, ``light_ham_d256``, ``hamnet``,
            ``upernet``, ``fpn``).
        num_classes: Output classes; None keeps the data config's ``data.num_classes``
            (150 with the default ``data=ade20k``).
        pretrained: ImageNet checkpoint of the backbone (VAN-Classification file); None
            builds without it (the training configs default to ``pretrained/van_*.pth.tar``).
        overrides: Further Hydra overrides, e.g. ``["backbone.pretrained=van_tiny_754.pth.tar"]``.
    """
    return build_model_from_config(
        compose_model_config(backbone, head, num_classes, pretrained, overrides)
    )


def compose_model_config(
    backbone: str = "van_tiny",
    head: str = "light_ham",
    num_classes: int | None = None,
    pretrained: str | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``{backbone, neck, head, aux_head}`` config that :func:`build_model` builds from."""
    from vanseg.utils.config import compose_config, model_config

    classes = [] if num_classes is None else [f"data.num_classes={num_classes}"]
    cfg = compose_config(
        [
            f"backbone={backbone}",
            f"head={head}",
            *classes,
            f"backbone.pretrained={'null' if pretrained is None else pretrained}",
            *overrides,
        ]
    )
    return model_config(cfg)


def save_model(
    model: Segmentor,
    model_cfg: Mapping[str, Any],
    path: str | Path,
    overwrite: bool = False,
    **meta,
) -> None:
    """Write ``{"state_dict", "vanseg": {"model": model_cfg, ...}}`` for :func:`load_model`.

    The file is written under a temporary name and renamed into place
    (`vanseg.utils.atomic`); an existing ``path`` is refused unless ``overwrite``.
    """
    with atomic_path(path, overwrite=overwrite) as tmp:
        torch.save(
            {
                "state_dict": model.state_dict(),
                CKPT_KEY: {"format": CKPT_FORMAT, "model": dict(model_cfg), **meta},
            },
            tmp,
        )


def load_model(path: str | Path, unsafe_load: bool = False) -> Segmentor:
    """Rebuild a model from a vanseg checkpoint (converted or trained) and return it in eval mode.

    The model is built from the config stored in the file once it has passed the gate for
    stored configs (`vanseg.trust`; ``backbone.pretrained`` is not reloaded), then the weights
    are loaded strictly.
    """
    return model_from_checkpoint(load_file(path, unsafe_load, "unsafe_load"), str(path))


def model_from_checkpoint(ckpt: Mapping[str, Any], source: str = "checkpoint") -> Segmentor:
    """:func:`load_model` for a checkpoint dict that is already in memory (read once).

    Args:
        ckpt: The loaded file: ``{"state_dict", "vanseg": {"model": ...}, ...}``.
        source: Its name in error messages (usually the path).
    """
    meta = ckpt.get(CKPT_KEY) if isinstance(ckpt, Mapping) else None
    if not meta or "model" not in meta:
        raise CheckpointError(
            f"{source} has no vanseg model config (key '{CKPT_KEY}'). Convert an original "
            "mmseg checkpoint with `python -m vanseg.tools.convert IN OUT backbone=... head=...`."
        )
    model = build_model_from_config(check_model_config(meta["model"], source, "vanseg.model"))
    state = ckpt["state_dict"]
    if state and all(k.startswith("model.") for k in state):  # a Lightning checkpoint
        state = {k.removeprefix("model."): v for k, v in state.items()}
    check_and_load(model, state, f"checkpoint {source}")
    return model.eval()
