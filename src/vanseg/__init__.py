"""vanseg: Visual Attention Network (VAN) semantic segmentation with Lightning and Hydra."""

from vanseg.api import build_model, build_model_from_config, load_model, save_model
from vanseg.training.run_dir import register_resolver as _register_resolver

_register_resolver()  # ${vanseg.fresh_dir:...} in conf/hydra/default.yaml

__version__ = "0.1.0"
__all__ = ["build_model", "build_model_from_config", "load_model", "save_model", "__version__"]
