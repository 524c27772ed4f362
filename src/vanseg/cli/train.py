"""``vanseg-train``: the console-script twin of the repository's ``train.py`` (same options).

vanseg-train backbone=van_base head=light_ham [experiment=...] [trainer=gpu] ...
"""

from __future__ import annotations

import logging
import sys

from omegaconf import DictConfig

from vanseg.cli import launch
from vanseg.errors import USER_ERROR_EXIT
from vanseg.utils.cli import multirun_job_dir, record_job_failure, user_errors

__all__ = ["run", "main"]


def run(cfg: DictConfig) -> float | None:
    """Hydra task: train, and return val/mIoU for sweepers.

    A stop by a signal or a failing data file (a checkpoint of the step was saved) exits with
    its own status (143 SIGTERM, 130 SIGINT, 2 data error); other user errors exit 2.
    """
    from vanseg.tasks.train import train
    from vanseg.training.signals import TrainingStopped

    try:
        return train(cfg)["metrics"].get("val/mIoU")
    except TrainingStopped as err:
        logging.getLogger("vanseg").error(str(err))
        job = multirun_job_dir()
        if job is not None and err.exit_code == USER_ERROR_EXIT:  # a data error: this job only
            record_job_failure(job, str(err).splitlines()[0], err.exit_code)
            return None
        sys.exit(err.exit_code)  # a signal stops the whole sweep


def main() -> None:
    """Console-script entry point."""
    launch(user_errors("vanseg-train")(run), "train")


if __name__ == "__main__":
    main()
