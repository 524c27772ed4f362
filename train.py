"""Train a VAN segmentation model: `python train.py backbone=van_base head=light_ham`.

Installed, the same command is `vanseg-train ...` (`vanseg.cli.train`).
"""

import hydra
from omegaconf import DictConfig

from vanseg.cli.train import run
from vanseg.config.compose import refuse_bad_overrides
from vanseg.utils.cli import user_errors


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@user_errors("train.py")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns val/mIoU for sweepers."""
    return run(cfg)


if __name__ == "__main__":
    refuse_bad_overrides("train.py", "train")  # a typo in a key: exit 2, not Hydra's 1
    main()
