"""Segment images: ``python predict.py ckpt_path=... input=<image|folder|glob> output=<folder>``.

See ``conf/predict.yaml`` for the options and `vanseg.evaluation.predict` for what is written.
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from vanseg.errors import ConfigError
from vanseg.evaluation.inference import resolve_protocol
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
        protocol = resolve_protocol(options.pop("inference"), options.pop("tta"))
    except ValueError as err:
        raise ConfigError(f"invalid inference/tta options: {err}") from err
    try:
        run_predict(protocol=protocol, **options)
    except ValueError as err:  # option values (palette, opacity) checked by the library
        raise ConfigError(str(err)) from err


if __name__ == "__main__":
    main()
