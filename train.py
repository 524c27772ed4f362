"""Train a VAN segmentation model: `python train.py backbone=van_base head=light_ham`."""

import logging
import sys

import hydra
from omegaconf import DictConfig

from vanseg.tasks import train
from vanseg.training.signals import TrainingStopped
from vanseg.utils.cli import user_errors


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@user_errors("train.py")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns val/mIoU for sweepers."""
    try:
        return train(cfg)["metrics"].get("val/mIoU")
    except TrainingStopped as err:  # a signal or a failing data file: checkpoint saved
        logging.getLogger("vanseg").error(str(err))
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
