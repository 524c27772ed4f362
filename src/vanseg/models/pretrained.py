"""Loading a state dict into a module strictly, and ImageNet VAN weights into a backbone."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from vanseg.errors import CheckpointError, InputNotFoundError
from vanseg.models import zoo
from vanseg.models.backbones.van import CLASSIFIER_PREFIX, checkpoint_filter_fn
from vanseg.utils.safe_load import load_file, unwrap_state_dict
from vanseg.utils.text import few

__all__ = ["check_and_load", "load_pretrained_backbone"]

log = logging.getLogger(__name__)


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
            f"({few(mis_typed, 3)}); it was not written for this model: use the checkpoint it "
            "was exported from"
        )
    if non_finite:
        raise CheckpointError(
            f"{source} holds NaN or infinite values in {len(non_finite)} tensor(s) "
            f"({few(non_finite, 3)}); these weights are broken: use an earlier checkpoint"
        )
    module.load_state_dict(state_dict, strict=True)


def _published_name(file_name: str) -> str | None:
    """The backbone name whose cached file is called ``file_name`` (``van_tiny_754.pth.tar``)."""
    for entry in zoo.registry().values():
        if entry.kind == "backbone" and entry.file == file_name:
            return entry.name
    return None


def load_pretrained_backbone(
    backbone: nn.Module, path: str | Path, unsafe_load: bool = False
) -> list[str]:
    """Load an ImageNet checkpoint of the original VAN classification repository.

    ``path`` is a file, or a published name (``van_tiny_754``, `vanseg.models.zoo`) that is
    downloaded into the cache once and checked. The file holds the backbone keys without prefix
    plus the classifier ``head.*``, usually under ``state_dict`` (docs/reference.md §2). The
    classifier is dropped and reported; any other missing, unexpected or mis-shaped key is an
    error.

    Returns:
        The dropped classifier keys.
    """
    if zoo.is_zoo_name(path) and not Path(path).is_file():
        path = zoo.fetch(str(path), "backbone")
    if not Path(path).is_file():
        name = _published_name(Path(path).name)
        raise InputNotFoundError(
            f"ImageNet-pretrained backbone weights not found at {path}. "
            + (
                f"Pass backbone.pretrained={name} to download them into the cache, fetch them "
                f"ahead with `{zoo.FETCH_COMMAND} {name}`, or put the file there by hand; "
                if name
                else "Pass a published name (`python -m vanseg.tools.weights list`) or a file; "
            )
            + "backbone.pretrained=null trains from scratch."
        )
    raw = unwrap_state_dict(load_file(path, unsafe_load, "backbone.unsafe_load"), path)
    dropped = sorted(k for k in raw if k.removeprefix("module.").startswith(CLASSIFIER_PREFIX))
    state = checkpoint_filter_fn(raw, backbone)
    check_and_load(backbone, state, f"pretrained file {path}")
    log.info("Loaded ImageNet weights from %s; dropped classifier keys: %s", path, dropped)
    return dropped
