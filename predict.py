"""Segment images: ``python predict.py ckpt_path=... input=<image|folder|glob> output=<folder>``.

See ``conf/predict.yaml`` for the options and `vanseg.evaluation.predict` for what is written.
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from vanseg.evaluation.inference import resolve_protocol
from vanseg.evaluation.predict import PredictError, run_predict


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    missing = [key for key in ("ckpt_path", "input", "output") if OmegaConf.is_missing(cfg, key)]
    if missing:
        raise SystemExit(f"predict.py: error: missing {' '.join(k + '=...' for k in missing)}")
    options = OmegaConf.to_container(cfg, resolve=True)
    try:
        inference = options.pop("inference")
        speed = {key: inference.pop(key) for key in ("precision", "fast") if key in inference}
        protocol = resolve_protocol(inference, options.pop("tta"))
        run_predict(protocol=protocol, **speed, **options)
    except (PredictError, FileNotFoundError, ValueError) as err:
        # Input mistakes get one clear line instead of a stack trace.
        raise SystemExit(f"predict.py: error: {err}") from err


if __name__ == "__main__":
    main()
