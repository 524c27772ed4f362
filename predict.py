"""Segment images: ``python predict.py ckpt_path=... input=<image|folder|glob> output=<folder>``.

See ``conf/predict.yaml`` for the options and `vanseg.evaluation.predict` for what is written.
Installed, the same command is ``vanseg-predict ...`` (`vanseg.cli.predict`).
"""

import hydra
from omegaconf import DictConfig

from vanseg.cli.predict import run


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    run(cfg, prog="predict.py")


if __name__ == "__main__":
    main()
