"""Loading checkpoint files safely, and ImageNet-pretrained VAN weights into a backbone."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vanseg.errors import InputNotFoundError, VansegError
from vanseg.models.backbones.van import CLASSIFIER_PREFIX, checkpoint_filter_fn
from vanseg.models.ckpt_check import Damage, diagnose, disallowed_globals

__all__ = ["load_file", "load_pretrained_backbone", "CheckpointError", "unwrap_state_dict"]

log = logging.getLogger(__name__)


class CheckpointError(VansegError, RuntimeError):
    """A checkpoint file cannot be read or does not fit the model."""


def load_file(
    path: str | Path, unsafe_load: bool = False, option: str = "unsafe_load", mmap: bool = False
) -> Any:
    """``torch.load`` on the CPU with ``weights_only=True`` unless explicitly allowed.

    Args:
        path: File to read.
        unsafe_load: Allow full unpickling (runs code stored in the file: trusted files only).
        option: Name of the user-facing switch, quoted in the error message.
        mmap: Map the tensors instead of reading them (for a quick look at large files).
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not unsafe_load, mmap=mmap)
    except Exception as err:  # torch raises EOFError, RuntimeError, UnpicklingError, KeyError...
        raise _explain(path, err, unsafe_load, option) from err


def _explain(path: Path, err: Exception, unsafe_load: bool, option: str) -> CheckpointError:
    """One line naming the file and what is wrong with it (see `vanseg.models.ckpt_check`)."""
    damage = diagnose(path)
    cause = (str(err).strip().splitlines() or [type(err).__name__])[0]
    if damage is None and not unsafe_load and isinstance(err, pickle.UnpicklingError):
        found = disallowed_globals(str(err))
        switch = f"pass {option}" if option.startswith("--") else f"set {option}=true"
        return CheckpointError(
            f"{path} {Damage.OBJECTS.value}"
            + (f" ({', '.join(found)})" if found else "")
            + ", so torch.load(weights_only=True) refused it; unpickling such a file can run "
            f"arbitrary code. If you trust its source, {switch} to load it fully "
            "(timm training checkpoints, for example, carry an argparse.Namespace)."
        )
    if damage is None:
        return CheckpointError(
            f"{path} {Damage.UNREADABLE.value} ({type(err).__name__}: {cause}); was it written "
            "by torch.save?"
        )
    size = path.stat().st_size
    what = f"{path} {damage.value}" + ("" if damage is Damage.EMPTY else f" ({size} bytes)")
    return CheckpointError(
        f"{what}; it was probably cut short while being written or copied. Copy or download "
        "it again, or use another checkpoint."
        if damage in (Damage.EMPTY, Damage.TRUNCATED)
        else f"{what}; pass a file written by train.py, vanseg.save_model or torch.save."
    )


def unwrap_state_dict(obj: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The tensor dict of a checkpoint: under ``state_dict`` or ``model``, or the object."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(
            f"{path}: expected a state dict of tensors (optionally under 'state_dict'), "
            f"got {type(obj).__name__}"
        )
    return dict(obj)


def _few(items: list[str], shown: int = 3) -> str:
    return ", ".join(items[:shown]) + (", ..." if len(items) > shown else "")


def check_and_load(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)``, with every missing/unexpected/mis-shaped key listed."""
    own = module.state_dict()
    # Files saved before BatchNorm tracked batches lack these counters; they carry no weights.
    state_dict = dict(state_dict)
    for key in own.keys() - state_dict.keys():
        if key.endswith("num_batches_tracked"):
            state_dict[key] = own[key]
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    common = sorted(set(own) & set(state_dict))
    mis_shaped = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in common
        if state_dict[k].shape != own[k].shape
    ]
    # load_state_dict would cast an int or bool tensor into a float weight (and back) silently.
    mis_typed = [
        f"{k}: file {state_dict[k].dtype} vs model {own[k].dtype}"
        for k in common
        if state_dict[k].is_floating_point() != own[k].is_floating_point()
    ]
    non_finite = [
        k
        for k in common
        if state_dict[k].is_floating_point() and not bool(torch.isfinite(state_dict[k]).all())
    ]
    problems = []
    for title, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("mis-shaped", mis_shaped),
    ):
        if keys:
            problems.append(f"{len(keys)} {title} key(s): " + ", ".join(keys))
    if problems:
        raise CheckpointError(
            f"{source} does not match the model ({type(module).__name__}):\n  "
            + "\n  ".join(problems)
            + "\nCheck that the backbone/head options match the checkpoint."
        )
    if mis_typed:
        raise CheckpointError(
            f"{source} stores {len(mis_typed)} tensor(s) with the wrong kind of dtype "
            f"({_few(mis_typed)}); it was not written for this model: use the checkpoint it "
            "was exported from"
        )
    if non_finite:
        raise CheckpointError(
            f"{source} holds NaN or infinite values in {len(non_finite)} tensor(s) "
            f"({_few(non_finite)}); these weights are broken: use an earlier checkpoint"
        )
    module.load_state_dict(state_dict, strict=True)


def load_pretrained_backbone(
    backbone: nn.Module, path: str | Path, unsafe_load: bool = False
) -> list[str]:
    """Load an ImageNet checkpoint of the original VAN classification repository.

    The file holds the backbone keys without prefix plus the classifier ``head.*``, usually
    under ``state_dict`` (docs/reference.md §2). The classifier is dropped and reported; any
    other missing, unexpected or mis-shaped key is an error.

    Returns:
        The dropped classifier keys.
    """
    if not Path(path).is_file():
        raise InputNotFoundError(
            f"ImageNet-pretrained backbone weights not found at {path}. Download the VAN "
            "classification checkpoint (van_tiny_754.pth.tar, van_small_811.pth.tar, "
            "van_base_828.pth.tar or van_large_839.pth.tar, github.com/Visual-Attention-Network/"
            "VAN-Classification) into that folder (paths.pretrained_dir), pass "
            "backbone.pretrained=<file>, or train from scratch with backbone.pretrained=null."
        )
    raw = unwrap_state_dict(load_file(path, unsafe_load, "backbone.unsafe_load"), path)
    dropped = sorted(k for k in raw if k.removeprefix("module.").startswith(CLASSIFIER_PREFIX))
    state = checkpoint_filter_fn(raw, backbone)
    check_and_load(backbone, state, f"pretrained file {path}")
    log.info("Loaded ImageNet weights from %s; dropped classifier keys: %s", path, dropped)
    return dropped
