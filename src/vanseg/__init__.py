"""vanseg: Visual Attention Network (VAN) semantic segmentation with Lightning and Hydra."""

from vanseg.api import build_model, build_model_from_config, load_model, save_model
from vanseg.optimize import optimize

__version__ = "0.1.0"
__all__ = [
    "build_model",
    "build_model_from_config",
    "load_model",
    "optimize",
    "save_model",
    "__version__",
]
