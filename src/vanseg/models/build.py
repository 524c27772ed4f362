"""Build a segmentor from the config groups (``backbone=``, ``head=``) or a plain model config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydra.utils import instantiate

from vanseg.models.segmentor import Segmentor

__all__ = ["build_model", "build_model_from_config", "compose_model_config"]


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
    from vanseg.config.compose import compose_config, model_config

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
