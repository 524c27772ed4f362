"""What an inference run does, as one printable, storable record: `InferenceProtocol`.

The fields follow the original's test pipelines (docs/reference.md §8): keep-ratio bounds,
ResizeToMultiple divisor, scale ratios and flip of ``MultiScaleFlipAug``, whole or sliding
window. `vanseg.inference.passes` runs a protocol; `vanseg.inference.assemble` picks the
default protocol of a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from vanseg.checkpoint.metadata import MS_RATIOS
from vanseg.data.transforms import ADE20K_SCALE, IMAGENET_MEAN, IMAGENET_STD

__all__ = ["AUG_TEST_NAME", "MS_RATIOS", "InferenceProtocol", "resolve_protocol"]

#: Name of the published multi-scale + flip protocol.
AUG_TEST_NAME = "test.py --aug-test"

Mode = Literal["whole", "slide"]


@dataclass(frozen=True)
class InferenceProtocol:
    """How to turn an image into class probabilities; printed and stored with every result.

    Args:
        mode: ``"whole"`` (one forward per pass) or ``"slide"`` (crop windows, logits averaged).
        name: Which protocol this is, e.g. ``"test.py default for hamnet"``; printed first by
            :meth:`describe` and stored with the results.
        scales: Ratios ``r`` of ``base_scale``; one pass per ratio (and per flip).
        flip: Add a horizontally flipped pass for every ratio.
        base_scale: ``(long, short)`` bounds of the keep-ratio resize at ``r = 1``; ``None``
            keeps the image size (times ``r``).
        size_divisor: Resize (not pad) each input to ``ceil(h / d) * d x ceil(w / d) * d``
            (the original's ``ResizeToMultiple(32)`` in the ``ade20k.py`` test pipeline).
        crop: Side of the square windows in ``slide`` mode.
        stride: Step between windows in ``slide`` mode (at most ``crop``).
    """

    mode: Mode = "whole"
    name: str = ""
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    base_scale: tuple[int, int] | None = ADE20K_SCALE
    size_divisor: int | None = None
    crop: int = 512
    stride: int = 341
    mean: tuple[float, float, float] = field(default=IMAGENET_MEAN, repr=False)
    std: tuple[float, float, float] = field(default=IMAGENET_STD, repr=False)

    def __post_init__(self) -> None:
        # Accept lists from configs; the dataclass stays hashable and immutable.
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if self.base_scale is not None:
            object.__setattr__(self, "base_scale", tuple(int(s) for s in self.base_scale))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if self.mode not in ("whole", "slide"):
            raise ValueError(f"inference mode must be 'whole' or 'slide', got {self.mode!r}")
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ValueError(f"scales must be positive ratios, got {self.scales}")
        if self.base_scale is not None and (len(self.base_scale) != 2 or min(self.base_scale) <= 0):
            raise ValueError(f"base_scale must be (long, short) > 0, got {self.base_scale}")
        if self.size_divisor is not None and self.size_divisor <= 0:
            raise ValueError(f"size_divisor must be positive or None, got {self.size_divisor}")
        if self.crop <= 0 or not 0 < self.stride <= self.crop:
            # A stride above the crop would leave pixels that no window covers.
            raise ValueError(f"need 0 < stride <= crop, got crop={self.crop} stride={self.stride}")

    @classmethod
    def ms_flip(cls, **kwargs: Any) -> InferenceProtocol:
        """The published protocol: ratios 0.5..1.75 x horizontal flip (12 passes)."""
        return cls(**{"scales": MS_RATIOS, "flip": True, "name": AUG_TEST_NAME, **kwargs})

    @property
    def passes(self) -> int:
        """Forward passes (or window sets) per image."""
        return len(self.scales) * (2 if self.flip else 1)

    def describe(self) -> str:
        """One line for logs and result files, e.g. ``whole | keep-ratio (2048, 512) | ...``."""
        parts = [self.name] if self.name else []
        parts += [
            self.mode if self.mode == "whole" else f"slide crop {self.crop} stride {self.stride}",
            f"keep-ratio {self.base_scale}" if self.base_scale else "original size",
        ]
        if self.size_divisor:
            parts.append(f"resize to multiple of {self.size_divisor}")
        if self.scales != (1.0,):
            parts.append("ratios " + ", ".join(f"{s:g}" for s in self.scales))
        if self.flip:
            parts.append("+ flip")
        if self.passes > 1:
            parts.append(f"softmax averaged over {self.passes} passes")
        return " | ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready fields (stored next to the numbers they produced)."""
        out = asdict(self)
        for key in ("scales", "base_scale", "mean", "std"):
            out[key] = list(out[key]) if out[key] is not None else None
        return out


def resolve_protocol(options: Mapping[str, Any], tta: str | None = None) -> InferenceProtocol:
    """Build a protocol from config fields; ``tta="ms_flip"`` sets the published ratios + flip.

    Args:
        options: :class:`InferenceProtocol` fields (``mode``, ``crop``, ...), e.g. the
            ``inference`` node of a config as a plain dict.
        tta: ``None``/``"none"`` (use ``options`` as given) or ``"ms_flip"``.
    """
    protocol = InferenceProtocol(**dict(options))
    if tta in (None, "none"):
        return protocol
    if tta == "ms_flip":
        return replace(protocol, scales=MS_RATIOS, flip=True, name=AUG_TEST_NAME)
    raise ValueError(f"unknown tta {tta!r}: use null (none) or 'ms_flip'")
