"""Segment images: ``python predict.py ckpt_path=... input=<image|folder|glob> output=<folder>``.

See ``conf/predict.yaml`` for the options and `vanseg.evaluation.predict` for what is written.
The protocol, normalisation, class names and palette come from the checkpoint, as in eval.py.
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from vanseg.errors import VansegError
from vanseg.evaluation.predict import run_predict
from vanseg.models.pretrained import CheckpointError


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    missing = [key for key in ("ckpt_path", "input", "output") if OmegaConf.is_missing(cfg, key)]
    if missing:
        raise SystemExit(f"predict.py: error: missing {' '.join(k + '=...' for k in missing)}")
    options = OmegaConf.to_container(cfg, resolve=True)
    try:
        run_predict(**options)
    except (VansegError, CheckpointError, FileNotFoundError, ValueError) as err:
        # Input mistakes get one clear line instead of a stack trace.
        raise SystemExit(f"predict.py: error: {err}") from err


if __name__ == "__main__":
    main()
