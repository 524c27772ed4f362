"""The speed wing: `vanseg.optimize`, fused CPU kernels, Winograd convolutions and the banded
loss. Nothing here is imported by ``import vanseg``; it loads when a caller asks for speed."""
