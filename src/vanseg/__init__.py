"""vanseg: Visual Attention Network (VAN) semantic segmentation with Lightning and Hydra."""

from vanseg.api import build_model, build_model_from_config, load_model, save_model
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
    "save_model",
    "save_pretrained",
    "__version__",
]
