"""Inference: the test protocol, the forward passes (whole, slide, multi-scale, flip), the
visualisation, and the one assembler (`vanseg.inference.assemble`) that the `Segmenter`,
``eval.py`` and ``predict.py`` use."""
