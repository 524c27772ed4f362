"""The VAN sizes as timm-registered model functions over one builder, ``_create_van``.

``timm.create_model("van_tiny", features_only=True)`` works once :mod:`vanseg.models` is
imported. The names are new to timm (it ships no VAN, docs/pitfalls.md I1); the sizes are
also registered under the classification repository's names ``van_b0``..``van_b3``.
``pretrained`` takes a local file of the original VAN classification repository, a published
name (``van_tiny_754``), or ``True`` for the size's published ImageNet weights: both are
fetched into vanseg's cache by `vanseg.models.zoo` (not timm's or torch.hub's), checked and
loaded by `load_pretrained_backbone`. Each pretrained_cfg names the official ``url`` for
reference only; timm's own loader is never used.
"""

from __future__ import annotations

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from vanseg.models import zoo
from vanseg.models.backbones.van import VAN
from vanseg.models.pretrained import load_pretrained_backbone

__all__ = ["van_tiny", "van_small", "van_base", "van_large", "van_test"]


def _build_van(pretrained_file: str | None = None, unsafe_load: bool = False, **kwargs) -> VAN:
    """``VAN(**kwargs)``, then the ImageNet weights of ``pretrained_file`` if given."""
    model = VAN(**kwargs)
    if pretrained_file:
        load_pretrained_backbone(model, pretrained_file, unsafe_load=unsafe_load)
    return model


def _create_van(variant: str, pretrained: bool | str | None = None, **kwargs) -> VAN:
    """Build a registered variant through timm's builder (``features_only`` works too).

    Args:
        variant: Registered name, e.g. ``"van_tiny"``.
        pretrained: Path of an ImageNet checkpoint of the original VAN classification
            repository, a published name, True for this size's published weights
            (`vanseg.models.zoo`), or None/False for random weights.
        **kwargs: :class:`VAN` arguments, ``unsafe_load`` (allow full unpickling of
            ``pretrained``; trusted files only) and timm's builder options.
    """
    if pretrained is True:
        pretrained = _published(variant)
        if pretrained is None:
            raise ValueError(
                f"{variant}: no published ImageNet weights; pass pretrained=<path of a VAN "
                "classification checkpoint> or pretrained=None."
            )
    return build_model_with_cfg(
        _build_van,
        variant,
        pretrained=False,
        kwargs_filter=("num_classes",),  # a backbone without classifier
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3), norm=True),
        pretrained_file=str(pretrained) if pretrained else None,
        **kwargs,
    )


#: The classification repository's names of the sizes registered here.
_ALIASES = {
    "van_b0": "van_tiny",
    "van_b1": "van_small",
    "van_b2": "van_base",
    "van_b3": "van_large",
}


def _published(variant: str) -> str | None:
    """The registry name of ``variant``'s ImageNet weights (``van_tiny`` -> ``van_tiny_754``)."""
    variant = _ALIASES.get(variant, variant)
    for entry in zoo.registry().values():
        if entry.kind == "backbone" and entry.variant == variant:
            return entry.name
    return None


def _cfg(variant: str) -> dict:
    name = _published(variant)
    return dict(
        url=zoo.get_entry(name).url if name else "",
        num_classes=0,
        input_size=(3, 512, 512),
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
    )


# Read by timm's register_model from this module; the URLs are for reference (see above).
default_cfgs = generate_default_cfgs(
    {
        name: _cfg(name)
        for name in ("van_tiny", "van_small", "van_base", "van_large", "van_test")
        + ("van_b0", "van_b1", "van_b2", "van_b3")
    }
)


@register_model
def van_tiny(pretrained: bool | str | None = None, **kwargs) -> VAN:
    """VAN-Tiny (VAN-B0): dims (32, 64, 160, 256), depths (3, 3, 5, 2), 3.85M params.

    ``pretrained`` and ``**kwargs`` as in :func:`_create_van` (``strides``,
    ``drop_path_rate``, ``unsafe_load``, ...).
    """
    model_args = dict(embed_dims=(32, 64, 160, 256), depths=(3, 3, 5, 2))
    return _create_van("van_tiny", pretrained, **dict(model_args, **kwargs))


@register_model
def van_small(pretrained: bool | str | None = None, **kwargs) -> VAN:
    """VAN-Small (VAN-B1): dims (64, 128, 320, 512), depths (2, 2, 4, 2). Args as van_tiny."""
    model_args = dict(embed_dims=(64, 128, 320, 512), depths=(2, 2, 4, 2))
    return _create_van("van_small", pretrained, **dict(model_args, **kwargs))


@register_model
def van_base(pretrained: bool | str | None = None, **kwargs) -> VAN:
    """VAN-Base (VAN-B2): dims (64, 128, 320, 512), depths (3, 3, 12, 3). Args as van_tiny."""
    model_args = dict(embed_dims=(64, 128, 320, 512), depths=(3, 3, 12, 3))
    return _create_van("van_base", pretrained, **dict(model_args, **kwargs))


@register_model
def van_large(pretrained: bool | str | None = None, **kwargs) -> VAN:
    """VAN-Large (VAN-B3): dims (64, 128, 320, 512), depths (3, 5, 27, 3). Args as van_tiny."""
    model_args = dict(embed_dims=(64, 128, 320, 512), depths=(3, 5, 27, 3))
    return _create_van("van_large", pretrained, **dict(model_args, **kwargs))


@register_model
def van_test(pretrained: bool | str | None = None, **kwargs) -> VAN:
    """Tiny VAN for tests and smoke runs: dims (32, 32, 64, 64), one block per stage."""
    model_args = dict(embed_dims=(32, 32, 64, 64), depths=(1, 1, 1, 1), drop_path_rate=0.0)
    return _create_van("van_test", pretrained, **dict(model_args, **kwargs))


@register_model
def van_b0(pretrained: bool | str | None = None, **kwargs) -> VAN:
    """The classification repository's name for :func:`van_tiny`."""
    return van_tiny(pretrained, **kwargs)


@register_model
def van_b1(pretrained: bool | str | None = None, **kwargs) -> VAN:
    """The classification repository's name for :func:`van_small`."""
    return van_small(pretrained, **kwargs)


@register_model
def van_b2(pretrained: bool | str | None = None, **kwargs) -> VAN:
    """The classification repository's name for :func:`van_base`."""
    return van_base(pretrained, **kwargs)


@register_model
def van_b3(pretrained: bool | str | None = None, **kwargs) -> VAN:
    """The classification repository's name for :func:`van_large`."""
    return van_large(pretrained, **kwargs)
