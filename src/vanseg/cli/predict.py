"""``vanseg-predict``: the console-script twin of the repository's ``predict.py`` (same options).

vanseg-predict ckpt_path=... input=<image|folder|glob> output=<folder>

The protocol, normalisation, class names and palette come from the checkpoint, as in eval.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from vanseg.cli import launch
from vanseg.utils.cli import user_errors

__all__ = ["run", "main"]


def run(cfg: DictConfig) -> None:
    """Hydra task: segment ``cfg.input`` into ``cfg.output``."""
    from vanseg.errors import ConfigError
    from vanseg.evaluation.predict import run_predict
    from vanseg.trust import apply_trusted_targets

    apply_trusted_targets(cfg)

    missing = [key for key in ("ckpt_path", "input", "output") if OmegaConf.is_missing(cfg, key)]
    if missing:
        raise ConfigError(f"missing {' '.join(k + '=...' for k in missing)}")
    options = OmegaConf.to_container(cfg, resolve=True)
    options.pop("trusted_targets", None)  # applied above
    try:
        run_predict(**options)
    except ValueError as err:  # option values (palette, opacity) checked by the library
        raise ConfigError(str(err)) from err


def main() -> None:
    """Console-script entry point."""
    launch(user_errors("vanseg-predict")(run), "predict")


if __name__ == "__main__":
    main()
