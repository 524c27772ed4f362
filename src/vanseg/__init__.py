"""vanseg: Visual Attention Network (VAN) semantic segmentation with Lightning and Hydra.

``import vanseg`` imports almost nothing: each public name below is imported from its home
module on first use (docs/architecture.md lists the homes). In particular the speed code
(`vanseg.accel`) is loaded only when ``vanseg.optimize`` or ``precision``/``fast`` ask for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vanseg._version import __version__
from vanseg.config.resolvers import register_resolvers as _register_resolvers

_register_resolvers()  # ${vanseg.fresh_dir:...} in conf/hydra/default.yaml

if TYPE_CHECKING:
    from vanseg.accel.optimize import optimize
    from vanseg.checkpoint.file import load_model, save_model
    from vanseg.checkpoint.hub import from_pretrained, save_pretrained
    from vanseg.checkpoint.init_from import build_model
    from vanseg.config.trust import trust_model_targets
    from vanseg.errors import UntrustedConfigError
    from vanseg.models.build import build_model_from_config
    from vanseg.segmenter import SegmentationResult, Segmenter

#: Public name -> its home module.
_LAZY = {
    "SegmentationResult": "vanseg.segmenter",
    "Segmenter": "vanseg.segmenter",
    "UntrustedConfigError": "vanseg.errors",
    "build_model": "vanseg.checkpoint.init_from",  # builds (models.build), then init_from
    "build_model_from_config": "vanseg.models.build",
    "from_pretrained": "vanseg.checkpoint.hub",
    "load_model": "vanseg.checkpoint.file",
    "optimize": "vanseg.accel.optimize",
    "save_model": "vanseg.checkpoint.file",
    "save_pretrained": "vanseg.checkpoint.hub",
    "trust_model_targets": "vanseg.config.trust",
}
__all__ = [
    "SegmentationResult",
    "Segmenter",
    "UntrustedConfigError",
    "__version__",
    "build_model",
    "build_model_from_config",
    "from_pretrained",
    "load_model",
    "optimize",
    "save_model",
    "save_pretrained",
    "trust_model_targets",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vanseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
