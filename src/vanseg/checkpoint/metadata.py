"""What a checkpoint says about its model, beyond the weights: one frozen record, `ModelMeta`.

``eval.py`` and ``predict.py`` take the class names, palette, normalisation and default test
protocol of a checkpoint from here, so the same checkpoint is preprocessed the same way by
both tools. `ModelMeta.to_dict` is plain JSON (e.g. for a ``config.json`` next to weights).

Where the fields come from:

* a ``train.py`` checkpoint stores its run config; its ``data`` node gives the classes,
  palette, ``mean``/``std``, ``eval_scale`` and ``test_size_divisor``;
* a converted original (or `vanseg.save_model`) stores the model config only; the ADE20K
  defaults of the original configs apply (ADE names and palette for 150 classes).

The default test protocol is the original's plain ``tools/test.py`` for the model's family
(docs/reference.md §8): HamNet's ``ade20k_std.py`` test pipeline is multi-scale (ratios
0.5-1.75, no flip, no ResizeToMultiple); the ``ade20k.py`` pipeline of Light-Ham, UperNet and
Semantic FPN is one scale, resized to a multiple of 32.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from vanseg.config.trust import MODEL_KEYS, check_data_config
from vanseg.data.classes import (
    ADE20K_NUM_CLASSES,
    IGNORE_INDEX,
    resolve_class_names,
    resolve_palette,
)
from vanseg.data.transforms import ADE20K_SCALE, IMAGENET_MEAN, IMAGENET_STD
from vanseg.errors import CheckpointError

__all__ = [
    "FAMILY_HEADS",
    "MS_RATIOS",
    "ModelMeta",
    "family_of",
    "family_protocol",
]

#: Decode-head class (last part of ``head._target_``) -> model family.
FAMILY_HEADS = {
    "LightHamHead": "light_ham",
    "HamHead": "hamnet",
    "UPerHead": "upernet",
    "FPNHead": "fpn",
}
#: ``img_ratios`` of ``ade20k_std.py`` (HamNet's test pipeline) and of ``test.py --aug-test``.
MS_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
#: ``ResizeToMultiple(size_divisor=32)`` of the ``ade20k.py`` test pipeline.
ADE_TEST_SIZE_DIVISOR = 32


def family_of(model_cfg: Mapping[str, Any]) -> str:
    """``light_ham``, ``hamnet``, ``upernet``, ``fpn`` or ``other``, from ``head._target_``."""
    head = model_cfg.get("head") or {}
    target = str(head.get("_target_", "")).rsplit(".", 1)[-1]
    return FAMILY_HEADS.get(target, "other")


def family_protocol(
    family: str, eval_scale: tuple[int, int], test_size_divisor: int | None
) -> dict[str, Any]:
    """The original's plain ``test.py`` protocol of a family, as plain fields.

    Args:
        family: See :func:`family_of`.
        eval_scale: ``(long, short)`` keep-ratio bounds at ratio 1.
        test_size_divisor: The data config's ``ResizeToMultiple`` divisor (ignored for HamNet,
            whose ``ade20k_std.py`` test pipeline has none).
    """
    if family == "hamnet":
        return {
            "name": "test.py default for hamnet (ade20k_std.py: 6 ratios, no flip)",
            "scales": list(MS_RATIOS),
            "flip": False,
            "base_scale": list(eval_scale),
            "size_divisor": None,
        }
    return {
        "name": f"test.py default for {family} (ade20k.py: one scale)",
        "scales": [1.0],
        "flip": False,
        "base_scale": list(eval_scale),
        "size_divisor": test_size_divisor,
    }


def _num_classes(model_cfg: Mapping[str, Any]) -> int:
    head = model_cfg.get("head") or {}
    if "num_classes" not in head:
        raise CheckpointError(
            f"the model config's head ({head.get('_target_', '?')}) has no num_classes; "
            "the checkpoint's 'vanseg.model' entry is incomplete: convert or save it again"
        )
    return int(head["num_classes"])


@dataclass(frozen=True)
class ModelMeta:
    """Everything besides the weights that inference needs, as plain immutable values.

    Args:
        model: ``{backbone, neck, head, aux_head}`` config nodes (plain dicts or ``None``).
        num_classes: Output classes of the decode head.
        ignore_index: Label value that is not evaluated.
        class_names: One name per class.
        palette: One ``(r, g, b)`` per class.
        mean, std: RGB normalisation in 0..255 units.
        family: ``light_ham``, ``hamnet``, ``upernet``, ``fpn`` or ``other``.
        test_protocol: The default test protocol (see :func:`family_protocol`).
        data_name: Name of the dataset the fields came from (``ade20k`` by default).
    """

    model: Mapping[str, Any]
    num_classes: int
    ignore_index: int = IGNORE_INDEX
    class_names: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    family: str = "other"
    test_protocol: Mapping[str, Any] = field(default_factory=dict)
    data_name: str = "ade20k"

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes or len(self.palette) != self.num_classes:
            raise CheckpointError(
                f"{self.num_classes} classes but {len(self.class_names)} class names and "
                f"{len(self.palette)} palette colours; give one name and colour per class"
            )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_model_and_data(
        cls, model_cfg: Mapping[str, Any], data: Mapping[str, Any] | None = None
    ) -> ModelMeta:
        """From a model config and a (resolved) ``data`` config node; ``None``: ADE defaults."""
        model = {key: copy.deepcopy(model_cfg.get(key)) for key in MODEL_KEYS}
        if not model["backbone"] or not model["head"]:
            raise CheckpointError(f"the model config lacks a backbone or head: {sorted(model_cfg)}")
        num_classes = _num_classes(model)
        family = family_of(model)
        data = dict(data or {})
        if data.get("num_classes") is not None and int(data["num_classes"]) != num_classes:
            raise CheckpointError(
                f"the model predicts {num_classes} classes but the data config "
                f"'{data.get('name')}' has data.num_classes={data['num_classes']}"
            )
        ade = num_classes == ADE20K_NUM_CLASSES
        names = data.get("class_names", "ade20k" if ade else None)
        if names is None and str(data.get("_target_", "")).endswith("SyntheticDataModule"):
            from vanseg.data.synthetic import synthetic_class_names

            names = synthetic_class_names(num_classes)
        palette = data.get("palette", "ade20k" if ade else None)
        scale = tuple(int(s) for s in data.get("eval_scale") or ADE20K_SCALE)
        divisor = data.get("test_size_divisor", ADE_TEST_SIZE_DIVISOR)
        return cls(
            model=model,
            num_classes=num_classes,
            ignore_index=int(data.get("ignore_index", IGNORE_INDEX)),
            class_names=tuple(resolve_class_names(names, num_classes)),
            palette=tuple(tuple(int(v) for v in c) for c in resolve_palette(palette, num_classes)),
            mean=tuple(float(v) for v in data.get("mean") or IMAGENET_MEAN),
            std=tuple(float(v) for v in data.get("std") or IMAGENET_STD),
            family=family,
            test_protocol=family_protocol(family, scale, divisor),
            data_name=str(data.get("name", "ade20k")),
        )

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], source: str = "checkpoint") -> ModelMeta:
        """From a checkpoint's vanseg entry as `vanseg.checkpoint.file.read_entry` returns it
        (its model config has passed the gate); the stored ``data`` node passes it here.

        Raises:
            UntrustedConfigError: The stored data config is not allowed.
        """
        stored = entry.get("config")
        data = stored.get("data") if isinstance(stored, Mapping) else None
        if data is not None:
            data = check_data_config(data, source, "vanseg.config.data")
        return cls.from_model_and_data(entry["model"], data)

    def with_data(self, data: Mapping[str, Any]) -> ModelMeta:
        """The same model described with another data config (e.g. ``eval.py data=...``)."""
        return ModelMeta.from_model_and_data(self.model, data)

    # ------------------------------------------------------------------ plain form
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields; :meth:`from_dict` reverses it."""
        return {
            "model": copy.deepcopy(dict(self.model)),
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "class_names": list(self.class_names),
            "palette": [list(c) for c in self.palette],
            "mean": list(self.mean),
            "std": list(self.std),
            "family": self.family,
            "test_protocol": copy.deepcopy(dict(self.test_protocol)),
            "data_name": self.data_name,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelMeta:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            model=copy.deepcopy(dict(values["model"])),
            num_classes=int(values["num_classes"]),
            ignore_index=int(values["ignore_index"]),
            class_names=tuple(values["class_names"]),
            palette=tuple(tuple(int(v) for v in c) for c in values["palette"]),
            mean=tuple(float(v) for v in values["mean"]),
            std=tuple(float(v) for v in values["std"]),
            family=str(values["family"]),
            test_protocol=copy.deepcopy(dict(values["test_protocol"])),
            data_name=str(values.get("data_name", "ade20k")),
        )

    def replace(self, **changes: Any) -> ModelMeta:
        """A copy with some fields changed (e.g. explicit ``palette`` overrides)."""
        return replace(self, **changes)
