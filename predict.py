"""Segment images: ``python predict.py ckpt_path=... input=<image|folder|glob> output=<folder>``.

See ``conf/predict.yaml`` for the options and `vanseg.tasks.predict` for what is written.
The protocol, normalisation, class names and palette come from the checkpoint, as in eval.py.
Installed, the same command is `vanseg-predict ...` (`vanseg.cli.predict`).
"""

import hydra
from omegaconf import DictConfig

from vanseg.cli.predict import run
from vanseg.config.compose import refuse_bad_overrides
from vanseg.utils.cli import user_errors


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
@user_errors("predict.py")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    refuse_bad_overrides("predict.py", "predict")  # a typo in a key: exit 2, not Hydra's 1
    main()
