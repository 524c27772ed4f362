"""Start a new model from another model's weights: ``model.init_from=<source>`` (fine-tuning).

A source is a vanseg checkpoint, an export folder, a Hub id (``owner/name``), an original
VAN-Segmentation (mmseg 0.x) checkpoint (its keys converted on the fly) or a weights name
(:func:`_resolve_name`). Every tensor whose name and shape match the new model is loaded;
the classifiers (``decode_head.conv_seg``, ``auxiliary_head.conv_seg``) keep the new model's
fresh initialisation when the class count differs. Anything else that does not fit is an
error. It is not a resume: training starts at step 0 with a fresh optimizer and schedule.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from vanseg.checkpoint.file import CKPT_KEY, model_from_checkpoint, read_checkpoint, read_entry
from vanseg.checkpoint.hub import load_pretrained, looks_like_hub_id
from vanseg.checkpoint.mmseg import convert_state_dict, is_original_state_dict
from vanseg.checkpoint.zoo import resolve_weights
from vanseg.errors import CheckpointError, InputNotFoundError
from vanseg.models.build import build_model as _build_model
from vanseg.models.pretrained import check_and_load
from vanseg.models.segmentor import Segmentor
from vanseg.models.zoo import is_zoo_name
from vanseg.utils.text import few

__all__ = ["CLASSIFIER_PREFIXES", "InitReport", "build_model", "init_model_from", "source_state"]

log = logging.getLogger("vanseg")

#: The layers that map features to classes: re-initialised when the class count differs.
CLASSIFIER_PREFIXES = ("decode_head.conv_seg.", "auxiliary_head.conv_seg.")
#: Names that are meant as files: a missing one is reported as such, not looked up.
_FILE_SUFFIXES = (".ckpt", ".pth", ".pt", ".tar", ".safetensors")


@dataclass(frozen=True)
class InitReport:
    """What :func:`init_model_from` did with each tensor.

    Attributes:
        source: Where the weights came from.
        loaded: New-model keys whose tensors were copied from the source.
        reinitialised: Classifier keys that keep the new model's initialisation.
        ignored: Source keys the new model does not have (e.g. an auxiliary head).
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def table(self) -> str:
        """A plain-text table with the counts and the keys of the smaller groups."""
        rows = [
            ("loaded", self.loaded, False),
            ("re-initialised", self.reinitialised, True),
            ("ignored", self.ignored, True),
        ]
        lines = [f"init_from {self.source}", f"  {'tensors':<15}{'count':>6}  keys"]
        for name, keys, show in rows:
            lines.append(f"  {name:<15}{len(keys):>6}  {few(keys, 6) if show else ''}".rstrip())
        return "\n".join(lines)


def _resolve_name(source: str) -> Path:
    """The local file of a published weights name (e.g. ``light_ham_van_tiny_ade20k``)."""
    if not is_zoo_name(source):
        raise CheckpointError(
            f"model.init_from={source} is not a file, folder, Hub id or published name; give a "
            "vanseg checkpoint, an export folder, owner/name, an original mmseg checkpoint or "
            "a name from `python -m vanseg.tools.weights list`"
        )
    return resolve_weights(source, "segmentation")


def _checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    ckpt = read_checkpoint(path, option="model.init_from")
    if CKPT_KEY in ckpt:  # a vanseg file: its model config passes the gate, then loads strictly
        entry = read_entry(ckpt, str(path))
        return model_from_checkpoint(ckpt, str(path), entry).state_dict()
    state = ckpt.get("state_dict")
    if isinstance(state, Mapping) and is_original_state_dict(state):
        return convert_state_dict(state)
    raise CheckpointError(
        f"model.init_from={path} is neither a vanseg checkpoint nor an original "
        "VAN-Segmentation (mmseg) checkpoint; give a file written by train.py, "
        "vanseg.save_model or mmseg"
    )


def source_state(source: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of ``source`` under vanseg's key names (see the module docstring)."""
    path = Path(source).expanduser()
    if not path.exists() and (
        path.suffix in _FILE_SUFFIXES or str(source).startswith((".", "/", "~"))
    ):
        raise InputNotFoundError(f"model.init_from={source}: no such file or folder")
    if path.is_dir() or (not path.exists() and looks_like_hub_id(str(source))):
        return load_pretrained(source).model.state_dict()
    if path.is_file():
        return _checkpoint_state(path)
    return source_state(_resolve_name(str(source)))


def _is_classifier(key: str) -> bool:
    return key.startswith(CLASSIFIER_PREFIXES)


def init_model_from(model: nn.Module, source: str | Path) -> InitReport:
    """Load the matching tensors of ``source`` into ``model`` and log the report table.

    Raises:
        CheckpointError: A tensor outside the classifiers is missing from the source or has
            another shape (another backbone width or head), naming the keys.
    """
    own = model.state_dict()
    src = source_state(source)
    report = InitReport(str(source))
    missing, mis_shaped = [], []
    merged = dict(own)
    for key, tensor in own.items():
        theirs = src.get(key)
        if theirs is not None and theirs.shape == tensor.shape:
            merged[key] = theirs
            report.loaded.append(key)
        elif _is_classifier(key):
            report.reinitialised.append(key)
        elif theirs is not None:
            mis_shaped.append(f"{key} {tuple(theirs.shape)} vs {tuple(tensor.shape)}")
        elif not key.endswith("num_batches_tracked"):
            missing.append(key)
    if missing or mis_shaped:
        parts = [
            f"{len(keys)} {what}: {few(keys, 4)}"
            for what, keys in (("missing", missing), ("mis-shaped", mis_shaped))
            if keys
        ]
        raise CheckpointError(
            f"model.init_from={source} does not fit the new model outside the classifiers ("
            + "; ".join(parts)
            + "); choose the backbone and head the source was trained with"
        )
    report.ignored.extend(sorted(k for k in src if k not in own))
    check_and_load(model, merged, f"model.init_from={source}")  # also dtypes and finite values
    log.info("%s", report.table())
    return report


def build_model(
    backbone: str = "van_tiny",
    head: str = "light_ham",
    num_classes: int | None = None,
    pretrained: str | None = None,
    overrides: Sequence[str] = (),
    init_from: str | Path | None = None,
) -> Segmentor:
    """`vanseg.models.build.build_model`, then :func:`init_model_from` when ``init_from`` is given.

    Args:
        init_from: Weights to start from (a checkpoint, export folder, Hub id, original mmseg
            checkpoint or weights name); the ImageNet ``pretrained`` file is then not loaded.
    """
    if init_from is None:
        return _build_model(backbone, head, num_classes, pretrained, overrides)
    model = _build_model(backbone, head, num_classes, None, overrides)
    init_model_from(model, init_from)
    return model
