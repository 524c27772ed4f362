"""Models: the VAN backbone, decode heads and the segmentor (short import paths for configs)."""

from vanseg.models.backbones.van import VAN, checkpoint_filter_fn
from vanseg.models.backbones.van_variants import van_base, van_large, van_small, van_test, van_tiny
from vanseg.models.heads.fcn import FCNHead
from vanseg.models.heads.fpn import FPN, FPNHead
from vanseg.models.heads.hamnet import HamHead
from vanseg.models.heads.light_ham import LightHamHead
from vanseg.models.heads.upernet import UPerHead
from vanseg.models.layers.matrix_decomposition import NMF2D, Hamburger
from vanseg.models.segmentor import Segmentor

__all__ = [
    "VAN",
    "van_tiny",
    "van_small",
    "van_base",
    "van_large",
    "van_test",
    "checkpoint_filter_fn",
    "LightHamHead",
    "HamHead",
    "UPerHead",
    "FPN",
    "FPNHead",
    "FCNHead",
    "NMF2D",
    "Hamburger",
    "Segmentor",
]
