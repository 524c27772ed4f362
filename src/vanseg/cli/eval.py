"""``vanseg-eval``: the console-script twin of the repository's ``eval.py`` (same options).

vanseg-eval ckpt_path=... [data=...] [tta=ms_flip] [inference.mode=slide] [eval_seed=0]
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from vanseg.cli import launch
from vanseg.utils.cli import user_errors

__all__ = ["run", "main"]


def run(cfg: DictConfig) -> float:
    """Hydra task: evaluate ``cfg.ckpt_path``; returns the mIoU (fraction) for sweepers."""
    from vanseg.tasks.evaluate import run_eval

    return run_eval(cfg).metrics["mIoU"]


def main() -> None:
    """Console-script entry point (``torchrun`` ranks > 0 create no run folders)."""
    from vanseg.utils.distributed import worker_rank_overrides

    sys.argv += worker_rank_overrides()
    launch(user_errors("vanseg-eval")(run), "eval")


if __name__ == "__main__":
    main()
