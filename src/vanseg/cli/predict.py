"""``vanseg-predict``: the console-script twin of the repository's ``predict.py`` (same options).

vanseg-predict ckpt_path=... input=<image|folder|glob> output=<folder>
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from vanseg.cli import launch

__all__ = ["run", "main"]


def run(cfg: DictConfig, prog: str = "vanseg-predict") -> None:
    """Hydra task: segment ``cfg.input`` into ``cfg.output``."""
    from vanseg.evaluation.inference import resolve_protocol
    from vanseg.evaluation.predict import PredictError, run_predict

    missing = [key for key in ("ckpt_path", "input", "output") if OmegaConf.is_missing(cfg, key)]
    if missing:
        raise SystemExit(f"{prog}: error: missing {' '.join(k + '=...' for k in missing)}")
    options = OmegaConf.to_container(cfg, resolve=True)
    try:
        protocol = resolve_protocol(options.pop("inference"), options.pop("tta"))
        run_predict(protocol=protocol, **options)
    except (PredictError, FileNotFoundError, ValueError) as err:
        # Input mistakes get one clear line instead of a stack trace.
        raise SystemExit(f"{prog}: error: {err}") from err


def main() -> None:
    """Console-script entry point."""
    launch(run, "predict")


if __name__ == "__main__":
    main()
