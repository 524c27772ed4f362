"""``vanseg-predict``: the console-script twin of the repository's ``predict.py`` (same options).

vanseg-predict ckpt_path=... input=<image|folder|glob> output=<folder>

The protocol, normalisation, class names and palette come from the checkpoint, as in eval.
"""

from __future__ import annotations

from omegaconf import DictConfig

from vanseg.cli import launch
from vanseg.utils.cli import user_errors

__all__ = ["run", "main"]


def run(cfg: DictConfig) -> None:
    """Hydra task: segment ``cfg.input`` into ``cfg.output`` (`vanseg.tasks.predict`)."""
    from vanseg.tasks.predict import predict_task

    predict_task(cfg)


def main() -> None:
    """Console-script entry point."""
    launch(user_errors("vanseg-predict")(run), "predict")


if __name__ == "__main__":
    main()
