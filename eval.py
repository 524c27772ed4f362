"""Evaluate a checkpoint on a validation split, with a stated inference protocol.

    python eval.py ckpt_path=... [data=...] [tta=ms_flip] [inference.mode=slide] [eval_seed=0]

See ``conf/eval.yaml`` for the options and `vanseg.evaluation.evaluate` for what is computed and
written. Several processes: ``torchrun --nproc_per_node N eval.py ckpt_path=...``.
"""

import sys

import hydra
from omegaconf import DictConfig

from vanseg.data.ade20k import DatasetError
from vanseg.errors import VansegError
from vanseg.evaluation.evaluate import run_eval, worker_rank_overrides
from vanseg.models.pretrained import CheckpointError


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the mIoU (fraction) for sweepers."""
    try:
        return run_eval(cfg).metrics["mIoU"]
    except (VansegError, CheckpointError, DatasetError, FileNotFoundError) as err:
        # Input mistakes get one clear message instead of a stack trace.
        raise SystemExit(f"eval.py: error: {err}") from err


if __name__ == "__main__":
    sys.argv += worker_rank_overrides()  # torchrun ranks > 0 create no run folders
    main()
