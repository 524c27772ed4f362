"""Converting an original VAN-Segmentation (mmseg 0.x) checkpoint into a vanseg checkpoint.

The input is the ``{'meta', 'state_dict', 'optimizer'}`` file written by mmcv
(docs/reference.md §2). Keys are renamed only where vanseg's module names differ (backbone
stages, HamNet's hamburger level); every key must then match the model built from the given
backbone/head exactly, else the error lists the missing, unexpected and mis-shaped keys.
The number of classes is read from the checkpoint. The output stores the model config, so
``vanseg.load_model(OUT.ckpt)`` rebuilds the model from the file alone. Used by
``python -m vanseg.tools.convert`` and by the published names (`vanseg.checkpoint.zoo`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from vanseg.checkpoint.file import save_model
from vanseg.config.compose import NO_PRETRAINED, compose_config, model_config
from vanseg.errors import CheckpointError
from vanseg.models.backbones.van import checkpoint_filter_fn
from vanseg.models.build import build_model_from_config
from vanseg.models.pretrained import check_and_load
from vanseg.utils.atomic import check_destination
from vanseg.utils.safe_load import load_file

__all__ = ["convert", "convert_state_dict", "is_original_state_dict"]


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


def convert(
    src: str | Path,
    dst: str | Path,
    overrides: Sequence[str] = (),
    unsafe_load: bool = False,
    overwrite: bool = False,
) -> str:
    """Convert ``src`` (mmseg checkpoint) to ``dst`` for the model chosen by ``overrides``.

    ``dst`` is written atomically; an existing one is refused unless ``overwrite``, and
    ``dst`` equal to ``src`` always is. ``src`` is read with ``weights_only`` loading unless
    ``unsafe_load``.

    Returns:
        A one-line summary (tensors converted, entries not carried over).
    """
    check_destination(dst, overwrite=overwrite, sources=[src], option="--overwrite")
    ckpt = load_file(src, unsafe_load, "--unsafe-load")
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{src} is not an mmseg checkpoint: expected a dict with a 'state_dict' entry"
        )
    state = convert_state_dict(ckpt["state_dict"])
    overrides = list(overrides)
    if "decode_head.conv_seg.weight" in state and not any(
        o.startswith("data.num_classes=") for o in overrides
    ):
        overrides.append(f"data.num_classes={state['decode_head.conv_seg.weight'].shape[0]}")
    cfg = model_config(compose_config([NO_PRETRAINED, *overrides]))
    model = build_model_from_config(cfg)
    check_and_load(model, state, f"converted {src}")
    ignored = sorted(k for k in ckpt if k != "state_dict")
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), Mapping) else {}
    save_model(
        model,
        cfg,
        dst,
        overwrite=overwrite,
        source=str(src),
        source_meta={k: meta[k] for k in ("mmseg_version", "CLASSES") if k in meta},
    )
    return f"Converted {len(state)} tensors from {src} to {dst}; not carried over: {ignored}"
