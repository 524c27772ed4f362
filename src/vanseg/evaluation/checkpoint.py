"""Load a checkpoint for inference (read the file once) and resolve its test protocol.

``eval.py`` and ``predict.py`` both call :func:`load_checkpoint` (model + `ModelMeta`) and
:func:`resolve_inference` (protocol from the checkpoint's defaults and explicit options), so
the same checkpoint is preprocessed identically by both tools.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vanseg.api import CKPT_KEY, model_from_checkpoint
from vanseg.errors import VansegError
from vanseg.evaluation.inference import AUG_TEST_NAME, InferenceProtocol, resolve_protocol
from vanseg.metadata import ModelMeta
from vanseg.models.pretrained import load_file

__all__ = [
    "FROM_CHECKPOINT",
    "CheckpointInputError",
    "LoadedCheckpoint",
    "load_checkpoint",
    "resolve_inference",
]

#: Value of an ``inference.*`` option meaning "the checkpoint's default test protocol".
FROM_CHECKPOINT = "checkpoint"
_PROTOCOL_KEYS = ("scales", "flip", "base_scale", "size_divisor")


class CheckpointInputError(VansegError, RuntimeError):
    """A checkpoint or inference option that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A model ready for inference (eval mode, CPU) and what its checkpoint says about it."""

    model: nn.Module
    meta: ModelMeta
    entry: Mapping[str, Any]  # the checkpoint's ``vanseg`` entry (model, config, source, ...)
    path: Path


def _no_config_message(path: Path, ckpt: Any) -> str:
    state = ckpt.get("state_dict") if isinstance(ckpt, Mapping) else None
    weight = state.get("decode_head.conv_seg.weight") if isinstance(state, Mapping) else None
    classes = f" data.num_classes={weight.shape[0]}" if torch.is_tensor(weight) else ""
    return (
        f"{path} stores no vanseg model config (no '{CKPT_KEY}' entry), so the model cannot "
        "be rebuilt from it. If it is an original VAN-Segmentation (mmseg) checkpoint, "
        "convert it once, naming the backbone and head it was trained with:\n"
        f"  python -m vanseg.tools.convert {path} converted.ckpt backbone=<van_tiny|van_small"
        f"|van_base|van_large> head=<light_ham|light_ham_d256|hamnet|upernet|fpn>{classes}\n"
        "then pass ckpt_path=converted.ckpt. Checkpoints written by train.py or "
        "vanseg.save_model carry the config already."
    )


def load_checkpoint(path: str | Path, unsafe_load: bool = False) -> LoadedCheckpoint:
    """Read a vanseg checkpoint once: the model (eval mode, CPU) and its `ModelMeta`.

    This is the one place where inference loads a model; wrappers (precision, compilation)
    belong here.

    Raises:
        CheckpointInputError: The file is missing, or it stores no model config (an
            unconverted original checkpoint or a plain state dict).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointInputError(f"checkpoint not found: ckpt_path={path} (no such file)")
    ckpt = load_file(path, unsafe_load, "unsafe_load")
    entry = ckpt.get(CKPT_KEY) if isinstance(ckpt, Mapping) else None
    if not isinstance(entry, Mapping) or not entry.get("model"):
        raise CheckpointInputError(_no_config_message(path, ckpt))
    meta = ModelMeta.from_checkpoint(ckpt, str(path))
    model = model_from_checkpoint(ckpt, str(path))
    return LoadedCheckpoint(model, meta, dict(entry), path)


def resolve_inference(
    meta: ModelMeta, options: Mapping[str, Any], tta: str | None = None
) -> InferenceProtocol:
    """The protocol to run: the checkpoint's default test protocol, explicit options on top.

    Args:
        meta: The checkpoint's metadata (its ``test_protocol``, ``mean`` and ``std``).
        options: ``inference`` config fields; ``scales``, ``flip``, ``base_scale``,
            ``size_divisor``, ``mean`` and ``std`` set to ``"checkpoint"`` (or absent) take the
            checkpoint's value, any other value wins.
        tta: ``None``/``"none"``, or ``"ms_flip"`` (the published ``test.py --aug-test``:
            ratios 0.5..1.75 x flip on the family's test pipeline).

    The protocol's ``name`` says which it is: the family's ``test.py`` default, ``test.py
    --aug-test``, plus the options that were changed.

    Raises:
        CheckpointInputError: Invalid options or ``tta``.
    """
    options = dict(options)
    defaults = dict(meta.test_protocol)
    changed = []
    for key in _PROTOCOL_KEYS:
        value = options.get(key, FROM_CHECKPOINT)
        if value == FROM_CHECKPOINT:
            options[key] = defaults[key]
        elif _plain(value) != _plain(defaults[key]):
            changed.append(f"{key}={value}")
    for key in ("mean", "std"):
        if options.get(key, FROM_CHECKPOINT) == FROM_CHECKPOINT:
            options[key] = getattr(meta, key)
    if options.get("mode", "whole") != "whole":
        changed.append(f"mode={options['mode']}")
    aug_test = tta not in (None, "none")
    name = f"{AUG_TEST_NAME} ({meta.family})" if aug_test else defaults["name"]
    options["name"] = name + (f" with {', '.join(changed)}" if changed else "")
    try:
        return resolve_protocol(options, tta) if not aug_test else _aug_test(options, tta)
    except (TypeError, ValueError) as err:
        raise CheckpointInputError(
            f"invalid inference options {options} / tta={tta!r}: {err}"
        ) from err


def _aug_test(options: dict[str, Any], tta: str | None) -> InferenceProtocol:
    name = options["name"]
    protocol = resolve_protocol(options, tta)
    return InferenceProtocol(**{**protocol.to_dict(), "name": name})


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return value
