"""Evaluate a checkpoint on a validation split, with a stated inference protocol.

    python eval.py ckpt_path=... [data=...] [tta=ms_flip] [inference.mode=slide] [eval_seed=0]

See ``conf/eval.yaml`` for the options and `vanseg.tasks.evaluate` for what is computed and
written. Several processes: ``torchrun --nproc_per_node N eval.py ckpt_path=...``. Installed,
the same command is `vanseg-eval ...` (`vanseg.cli.eval`).
"""

import sys

import hydra
from omegaconf import DictConfig

from vanseg.cli.eval import run
from vanseg.config.compose import refuse_bad_overrides
from vanseg.utils.cli import user_errors
from vanseg.utils.distributed import worker_rank_overrides


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
@user_errors("eval.py")
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the mIoU (fraction) for sweepers."""
    return run(cfg)


if __name__ == "__main__":
    sys.argv += worker_rank_overrides()  # torchrun ranks > 0 create no run folders
    refuse_bad_overrides("eval.py", "eval")  # a typo in a key: exit 2, not Hydra's 1
    main()
