"""Segment images: ``python predict.py ckpt_path=... input=<image|folder|glob> output=<folder>``.

See ``conf/predict.yaml`` for the options and `vanseg.evaluation.predict` for what is written.
The protocol, normalisation, class names and palette come from the checkpoint, as in eval.py.
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from vanseg.errors import ConfigError
from vanseg.evaluation.predict import run_predict
from vanseg.utils.cli import user_errors


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
@user_errors("predict.py")
def main(cfg: DictConfig) -> None:
    missing = [key for key in ("ckpt_path", "input", "output") if OmegaConf.is_missing(cfg, key)]
    if missing:
        raise ConfigError(f"missing {' '.join(k + '=...' for k in missing)}")
    options = OmegaConf.to_container(cfg, resolve=True)
    try:
        run_predict(**options)
    except ValueError as err:  # option values (palette, opacity) checked by the library
        raise ConfigError(str(err)) from err


if __name__ == "__main__":
    main()
