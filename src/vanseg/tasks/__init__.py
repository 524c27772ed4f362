"""The tasks behind ``train.py``, ``eval.py`` and ``predict.py``: the only readers of a Hydra
``DictConfig`` (configuration stops here; the layers below take plain values)."""
