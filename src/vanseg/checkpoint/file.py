"""The vanseg checkpoint file: the one module that reads and writes it.

A checkpoint is a ``torch.save`` dict. Besides the weights (``state_dict``, prefixed with
``model.`` in a Lightning checkpoint) it holds the vanseg entry under :data:`CKPT_KEY`::

    {"format": 1, "model": {backbone, neck, head, aux_head},
     "config": <the resolved run config>,          # train.py checkpoints only
     "wandb_run_id": ..., **extra}                 # e.g. "source" of a converted file

Writers: :func:`write_checkpoint` writes every file, for :func:`save_model` (converted and
hand-saved models) and for Lightning (`AtomicCheckpointIO`); the entry comes from
:func:`make_entry`, for ``save_model`` and `SegmentationModule.on_save_checkpoint`. Readers:
:func:`read_checkpoint` (the file, through ``weights_only`` `load_file`), :func:`read_entry`
(the entry, through the gate for stored configs, once), :func:`load_checkpoint` (model and
`ModelMeta` for inference), :func:`load_model` and :func:`stored_step` (resume).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vanseg.checkpoint.metadata import ModelMeta
from vanseg.config.trust import check_model_config
from vanseg.errors import CheckpointError, InputNotFoundError
from vanseg.models.build import build_model_from_config
from vanseg.models.pretrained import check_and_load
from vanseg.models.segmentor import Segmentor
from vanseg.utils.atomic import check_destination
from vanseg.utils.safe_load import load_file

__all__ = [
    "CKPT_FORMAT",
    "CKPT_KEY",
    "LoadedCheckpoint",
    "load_checkpoint",
    "load_model",
    "make_entry",
    "model_from_checkpoint",
    "model_with_weights",
    "read_checkpoint",
    "read_entry",
    "require_file",
    "save_model",
    "stored_step",
    "write_checkpoint",
]

#: Key of the vanseg entry (model config, run config) in every checkpoint written by vanseg.
CKPT_KEY = "vanseg"
#: ``format`` of the entry this module writes.
CKPT_FORMAT = 1


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A model ready for inference (eval mode, CPU) and what its file says about it.

    Attributes:
        model: The segmentor with the stored weights.
        meta: Class names, palette, normalisation and default test protocol.
        entry: The file's vanseg entry (``model``, ``config``, ...) or an export's config.
        path: The file the weights came from.
    """

    model: nn.Module
    meta: ModelMeta
    entry: Mapping[str, Any]
    path: Path


# --------------------------------------------------------------------------- writing
def make_entry(model_cfg: Mapping[str, Any] | None, **extra: Any) -> dict[str, Any]:
    """The vanseg entry of a checkpoint: the format, the model config and ``extra`` fields."""
    return {"format": CKPT_FORMAT, "model": dict(model_cfg or {}) or None, **extra}


def save_model(
    model: Segmentor,
    model_cfg: Mapping[str, Any],
    path: str | Path,
    overwrite: bool = False,
    **meta: Any,
) -> None:
    """Write ``{"state_dict", "vanseg": make_entry(model_cfg, **meta)}`` for :func:`load_model`.

    The file is written by :func:`write_checkpoint`; an existing ``path`` is refused unless
    ``overwrite``.
    """
    check_destination(path, overwrite=overwrite)
    write_checkpoint(
        {"state_dict": model.state_dict(), CKPT_KEY: make_entry(model_cfg, **meta)}, path
    )


def write_checkpoint(ckpt: Mapping[str, Any], path: str | Path) -> None:
    """``torch.save`` a checkpoint dict atomically: into ``.<name>.<random>.tmp`` beside
    ``path``, flushed to disk, then renamed into place.

    Lightning's saves come here too (`vanseg.training.signals.AtomicCheckpointIO`). On failure
    the temporary file is removed, ``path`` is untouched and the ``OSError`` (or torch's
    ``RuntimeError`` from its zip writer, e.g. on a full disk) propagates. Leftovers of a killed
    process match ``.*.ckpt.*.tmp`` (`vanseg.training.resume.remove_partial_writes`).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(ckpt), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(name, target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- reading
def require_file(path: str | Path, option: str = "ckpt_path") -> Path:
    """``path`` as a `Path`, or `InputNotFoundError` naming the option that gave it."""
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise InputNotFoundError(f"checkpoint not found: {option}={path} ({what})")
    return path


def read_checkpoint(
    path: str | Path, unsafe_load: bool = False, option: str = "ckpt_path", mmap: bool = False
) -> dict[str, Any]:
    """The checkpoint dict, read once with ``weights_only=True`` unless ``unsafe_load``.

    Args:
        path: The file.
        unsafe_load: Allow full unpickling (runs code stored in the file: trusted files only).
        option: The option that named the file, for messages (``ckpt_path``, ``--input``).
        mmap: Map the tensors instead of reading them (a quick look at a large file).
    """
    ckpt = load_file(require_file(path, option), unsafe_load, "unsafe_load", mmap=mmap)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not a checkpoint dict")
    return dict(ckpt)


def _no_entry_message(source: str, ckpt: Mapping[str, Any]) -> str:
    state = ckpt.get("state_dict")
    weight = state.get("decode_head.conv_seg.weight") if isinstance(state, Mapping) else None
    classes = f" data.num_classes={weight.shape[0]}" if torch.is_tensor(weight) else ""
    return (
        f"{source} stores no vanseg model config (no '{CKPT_KEY}' entry), so the model cannot "
        "be rebuilt from it. If it is an original VAN-Segmentation (mmseg) checkpoint, "
        "convert it once, naming the backbone and head it was trained with:\n"
        f"  python -m vanseg.tools.convert {source} converted.ckpt backbone=<van_tiny|van_small"
        f"|van_base|van_large> head=<light_ham|light_ham_d256|hamnet|upernet|fpn>{classes}\n"
        "then pass ckpt_path=converted.ckpt. Checkpoints written by train.py or "
        "vanseg.save_model carry the config already."
    )


def read_entry(ckpt: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The checkpoint's vanseg entry, its model config through the gate for stored configs.

    Raises:
        CheckpointError: No entry with a model config (an unconverted original, a plain state
            dict), or an entry of a newer format.
        UntrustedConfigError: The stored model config names code that may not run.
    """
    entry = ckpt.get(CKPT_KEY)
    if not isinstance(entry, Mapping) or not entry.get("model"):
        raise CheckpointError(_no_entry_message(source, ckpt))
    if int(entry.get("format", CKPT_FORMAT)) > CKPT_FORMAT:
        raise CheckpointError(
            f"{source} has vanseg format {entry['format']}, newer than this vanseg reads "
            f"({CKPT_FORMAT}); upgrade vanseg"
        )
    return {**entry, "model": check_model_config(entry["model"], source, f"{CKPT_KEY}.model")}


def stored_step(path: str | Path) -> int:
    """The ``global_step`` stored in a Lightning checkpoint (read mapped, ``weights_only``)."""
    return int(read_checkpoint(path, mmap=True)["global_step"])


def model_from_checkpoint(
    ckpt: Mapping[str, Any], source: str = "checkpoint", entry: Mapping[str, Any] | None = None
) -> Segmentor:
    """The model (eval mode) of a checkpoint dict already in memory, weights loaded strictly.

    Args:
        ckpt: The loaded file.
        source: Its name in error messages (usually the path).
        entry: Its entry from :func:`read_entry`, if read already.
    """
    entry = read_entry(ckpt, source) if entry is None else entry
    return model_with_weights(entry["model"], ckpt["state_dict"], f"checkpoint {source}")


def model_with_weights(
    model_cfg: Mapping[str, Any], state: Mapping[str, torch.Tensor], source: str
) -> Segmentor:
    """Build the model of a (gated) model config and load ``state`` strictly; eval mode.

    The one way a model file becomes a model, for checkpoints and export folders alike.
    ``model.``-prefixed keys (a Lightning checkpoint) are taken without the prefix.
    """
    model = build_model_from_config(json.loads(json.dumps(dict(model_cfg))))  # a private copy
    if state and all(k.startswith("model.") for k in state):
        state = {k.removeprefix("model."): v for k, v in state.items()}
    check_and_load(model, state, source)
    return model.eval()


def load_model(path: str | Path, unsafe_load: bool = False) -> Segmentor:
    """Rebuild a model from a vanseg checkpoint (converted or trained), in eval mode.

    The model is built from the config stored in the file once it has passed the gate for
    stored configs (`vanseg.config.trust`; ``backbone.pretrained`` is not reloaded), then the
    weights are loaded strictly.
    """
    return model_from_checkpoint(read_checkpoint(path, unsafe_load), str(path))


def load_checkpoint(
    path: str | Path, unsafe_load: bool = False, option: str = "ckpt_path"
) -> LoadedCheckpoint:
    """Read a vanseg checkpoint once: the model (eval mode, CPU) and its `ModelMeta`."""
    ckpt = read_checkpoint(path, unsafe_load, option)
    entry = read_entry(ckpt, str(path))
    meta = ModelMeta.from_entry(entry, str(path))
    return LoadedCheckpoint(model_from_checkpoint(ckpt, str(path), entry), meta, entry, Path(path))
