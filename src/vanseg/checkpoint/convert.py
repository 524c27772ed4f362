"""Key names of original VAN-Segmentation (mmseg 0.x) checkpoints -> vanseg's.

`vanseg.tools.convert` writes a converted file with it; `vanseg.checkpoint.init_from`
converts an original checkpoint on the fly to initialise a new model from it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from vanseg.models.backbones.van import checkpoint_filter_fn

__all__ = ["convert_state_dict", "is_original_state_dict"]

#: Key prefixes renamed outside the backbone: HamHead's hamburger is a method in mmseg.
_HEAD_RENAMES = {
    "decode_head.ham_in.": "decode_head.hamburger.ham_in.",
    "decode_head.ham_out.": "decode_head.hamburger.ham_out.",
}


def convert_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Pure key remap from mmseg ``EncoderDecoder`` names to :class:`Segmentor` names."""
    backbone = {}
    out = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith("backbone."):
            backbone[key.removeprefix("backbone.")] = value
            continue
        for old, new in _HEAD_RENAMES.items():
            if key.startswith(old):
                key = new + key.removeprefix(old)
        out[key] = value
    out.update({f"backbone.{k}": v for k, v in checkpoint_filter_fn(backbone).items()})
    return out


def is_original_state_dict(state_dict: Mapping[str, object]) -> bool:
    """Whether a state dict uses mmseg's VAN names (``backbone.block1.*``, not ``stages``)."""
    keys = [k.removeprefix("module.") for k in state_dict]
    return any(k.startswith("backbone.block1.") for k in keys) and not any(
        k.startswith("backbone.stages.") for k in keys
    )
