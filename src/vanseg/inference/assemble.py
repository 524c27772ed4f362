"""The one inference assembler: a model and its `ModelMeta` in, a ready `Runner` out.

The `Segmenter`, ``eval.py`` and ``predict.py`` (its pipeline runs a segmenter's passes) all call
:func:`assemble`, so one checkpoint is preprocessed and run identically by each of them:

1. the protocol: the checkpoint's default test protocol with the explicit ``inference``
   options and ``tta`` on top (:func:`resolve_inference`);
2. the device, and the NMF ``eval_seed`` of the Ham heads;
3. the module that runs the forward passes: the model itself, or the autocast / folded copy
   that ``precision`` and ``fast`` select (`vanseg.accel.optimize.for_inference`, imported only
   then).

The options are the ``conf/inference`` group (``mode``, ``scales``, ..., ``precision``,
``fast``) as a plain mapping; configuration stops at the tasks, which pass that mapping here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vanseg.checkpoint.metadata import ModelMeta
from vanseg.errors import ConfigError
from vanseg.inference.passes import set_eval_seed
from vanseg.inference.protocol import AUG_TEST_NAME, InferenceProtocol, resolve_protocol
from vanseg.utils.distributed import resolve_device

__all__ = ["FROM_CHECKPOINT", "PRECISIONS", "Runner", "assemble", "resolve_inference"]

#: Value of an ``inference.*`` option meaning "the checkpoint's default test protocol".
FROM_CHECKPOINT = "checkpoint"
#: ``inference.precision`` values; anything but fp32 (or ``fast``) loads `vanseg.accel`.
PRECISIONS = ("fp32", "bf16", "fp16")
_PROTOCOL_KEYS = ("scales", "flip", "base_scale", "size_divisor")
_SPEED_KEYS = ("precision", "fast")


@dataclass(frozen=True)
class Runner:
    """Everything inference needs, assembled once.

    Attributes:
        model: The segmentor (eval mode, on ``device``).
        forward: The module that runs the passes: ``model`` itself unless ``precision`` or
            ``fast`` asked for another.
        meta: The checkpoint's metadata (class names, palette, normalisation).
        protocol: The resolved test protocol.
        precision, fast: The speed options ``forward`` was built with.
        eval_seed: The NMF seed of the Ham heads, or ``None`` (fresh random bases).
        device: Where ``model`` runs.
    """

    model: nn.Module
    forward: nn.Module
    meta: ModelMeta
    protocol: InferenceProtocol
    precision: str
    fast: bool
    eval_seed: int | None
    device: torch.device

    def settings(self) -> dict[str, Any]:
        """The plain settings (no modules): what a report stores, and what tests compare."""
        return {
            "protocol": self.protocol.to_dict(),
            "precision": self.precision,
            "fast": self.fast,
            "eval_seed": self.eval_seed,
            "device": str(self.device),
            "forward": type(self.forward).__name__,
        }


def resolve_inference(
    meta: ModelMeta, options: Mapping[str, Any], tta: str | None = None
) -> InferenceProtocol:
    """The protocol to run: the checkpoint's default test protocol, explicit options on top.

    Args:
        meta: The checkpoint's metadata (its ``test_protocol``, ``mean`` and ``std``).
        options: ``inference`` fields; ``scales``, ``flip``, ``base_scale``, ``size_divisor``,
            ``mean`` and ``std`` set to ``"checkpoint"`` (or absent) take the checkpoint's
            value, any other value wins. ``precision`` and ``fast`` are not protocol fields.
        tta: ``None``/``"none"``, or ``"ms_flip"`` (the published ``test.py --aug-test``:
            ratios 0.5..1.75 x flip on the family's test pipeline).

    The protocol's ``name`` says which it is: the family's ``test.py`` default, ``test.py
    --aug-test``, plus the options that were changed.

    Raises:
        ConfigError: Invalid options or ``tta``.
    """
    options = {k: v for k, v in options.items() if k not in _SPEED_KEYS}
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
    name += f" with {', '.join(changed)}" if changed else ""
    try:
        protocol = resolve_protocol(options, tta)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid inference options {options} / tta={tta!r}: {err}") from err
    return InferenceProtocol(**{**protocol.to_dict(), "name": name})


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return value


def _forward_module(model: nn.Module, precision: str, fast: bool) -> nn.Module:
    if precision not in PRECISIONS:
        raise ConfigError(
            f"inference.precision must be one of {list(PRECISIONS)}, got {precision!r}"
        )
    if precision == "fp32" and not fast:
        return model  # the faithful path: vanseg.accel stays unimported
    from vanseg.accel.optimize import for_inference

    return for_inference(model, precision, fast)


def assemble(
    model: nn.Module,
    meta: ModelMeta,
    options: Mapping[str, Any] | None = None,
    tta: str | None = None,
    eval_seed: int | None = None,
    device: str | torch.device = "auto",
    protocol: InferenceProtocol | None = None,
) -> Runner:
    """Put a model on its device, seed it and wrap it as the options ask.

    Args:
        model: A vanseg segmentor.
        meta: Its metadata.
        options: The ``inference`` options (``conf/inference``): protocol fields, ``precision``
            (``fp32``, ``bf16``, ``fp16``) and ``fast``.
        tta: ``None`` or ``"ms_flip"``.
        eval_seed: Ham heads: fix the NMF bases (repeatable outputs); ``None`` keeps the
            original's fresh random bases.
        device: ``"auto"`` (CUDA if available, ``cuda:LOCAL_RANK`` under torchrun), ``"cpu"``...
        protocol: A ready protocol instead of the one ``options``/``tta`` give.

    Raises:
        ConfigError: Invalid options, ``tta`` or precision, or a precision the device lacks.
    """
    options = dict(options or {})
    precision, fast = str(options.get("precision", "fp32")), bool(options.get("fast", False))
    protocol = protocol or resolve_inference(meta, options, tta)
    device = device if isinstance(device, torch.device) else resolve_device(str(device))
    model = model.to(device).eval()
    if eval_seed is not None:
        set_eval_seed(model, int(eval_seed))
    forward = _forward_module(model, precision, fast)
    return Runner(model, forward, meta, protocol, precision, fast, eval_seed, device)
