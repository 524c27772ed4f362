"""vanseg: Visual Attention Network (VAN) semantic segmentation with Lightning and Hydra."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vanseg.api import build_model, build_model_from_config, load_model, save_model
from vanseg.optimize import optimize
from vanseg.training.run_dir import register_resolver as _register_resolver
from vanseg.trust import UntrustedConfigError, trust_model_targets

_register_resolver()  # ${vanseg.fresh_dir:...} in conf/hydra/default.yaml

if TYPE_CHECKING:
    from vanseg.hub import from_pretrained, save_pretrained
    from vanseg.segmenter import SegmentationResult, Segmenter

__version__ = "0.1.0"
__all__ = [
    "SegmentationResult",
    "Segmenter",
    "build_model",
    "build_model_from_config",
    "from_pretrained",
    "load_model",
    "optimize",
    "save_model",
    "save_pretrained",
    "trust_model_targets",
    "UntrustedConfigError",
    "__version__",
]

# Imported on first use: the inference API pulls in the data pipeline (and Lightning), which
# `import vanseg` for building a model does not need.
_LAZY = {
    "SegmentationResult": "vanseg.segmenter",
    "Segmenter": "vanseg.segmenter",
    "from_pretrained": "vanseg.hub",
    "save_pretrained": "vanseg.hub",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vanseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
