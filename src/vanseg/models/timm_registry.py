"""Registers the VAN backbones with timm (``timm.create_model("van_tiny", features_only=True)``).

timm ships no VAN (docs/pitfalls.md I1), so these names are new to its registry. The sizes are
also registered under the classification repository's names ``van_b0``..``van_b3``.
"""

from __future__ import annotations

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from vanseg.models.backbones.van import VAN, VAN_SIZES, checkpoint_filter_fn

__all__ = ["TIMM_NAMES"]

#: timm name -> vanseg size.
TIMM_NAMES = {
    "van_tiny": "van_tiny",
    "van_small": "van_small",
    "van_base": "van_base",
    "van_large": "van_large",
    "van_b0": "van_tiny",
    "van_b1": "van_small",
    "van_b2": "van_base",
    "van_b3": "van_large",
}


def _filter(state_dict: dict, model: VAN) -> dict:
    state_dict = state_dict.get("state_dict", state_dict)
    return checkpoint_filter_fn({k: v for k, v in state_dict.items() if not k.startswith("head.")})


def _make_entrypoint(timm_name: str, size: str):
    dims, depths = VAN_SIZES[size]

    def entrypoint(pretrained: bool = False, **kwargs) -> VAN:
        return build_model_with_cfg(
            VAN,
            timm_name,
            pretrained,
            pretrained_filter_fn=_filter,
            kwargs_filter=("num_classes",),  # a backbone without classifier
            feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)),
            embed_dims=dims,
            depths=depths,
            **kwargs,
        )

    entrypoint.__name__ = timm_name
    entrypoint.__qualname__ = timm_name
    entrypoint.__doc__ = f"VAN {size} backbone (vanseg); dims {dims}, depths {depths}."
    entrypoint.__module__ = __name__
    return entrypoint


# Read by timm's register_model from this module: no download URL (weights are local files).
default_cfgs = generate_default_cfgs(
    {
        name: dict(
            num_classes=0,
            input_size=(3, 512, 512),
            mean=IMAGENET_DEFAULT_MEAN,
            std=IMAGENET_DEFAULT_STD,
        )
        for name in TIMM_NAMES
    }
)

for _name, _size in TIMM_NAMES.items():
    globals()[_name] = register_model(_make_entrypoint(_name, _size))
