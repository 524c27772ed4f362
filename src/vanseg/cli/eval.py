"""``vanseg-eval``: the console-script twin of the repository's ``eval.py`` (same options).

vanseg-eval ckpt_path=... [data=...] [tta=ms_flip] [inference.mode=slide] [eval_seed=0]
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from vanseg.cli import launch

__all__ = ["run", "main"]


def run(cfg: DictConfig, prog: str = "vanseg-eval") -> float:
    """Hydra task: evaluate ``cfg.ckpt_path``; returns the mIoU (fraction) for sweepers."""
    from vanseg.data.ade20k import DatasetError
    from vanseg.evaluation.evaluate import EvalError, run_eval
    from vanseg.models.pretrained import CheckpointError

    try:
        return run_eval(cfg).metrics["mIoU"]
    except (EvalError, CheckpointError, DatasetError, FileNotFoundError) as err:
        # Input mistakes get one clear message instead of a stack trace.
        raise SystemExit(f"{prog}: error: {err}") from err


def main() -> None:
    """Console-script entry point (``torchrun`` ranks > 0 create no run folders)."""
    from vanseg.evaluation.evaluate import worker_rank_overrides

    sys.argv += worker_rank_overrides()
    launch(run, "eval")


if __name__ == "__main__":
    main()
