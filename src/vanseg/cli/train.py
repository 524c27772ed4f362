"""``vanseg-train``: the console-script twin of the repository's ``train.py`` (same options).

vanseg-train backbone=van_base head=light_ham [experiment=...] [trainer=gpu] ...
"""

from __future__ import annotations

from omegaconf import DictConfig

from vanseg.cli import launch

__all__ = ["run", "main"]


def run(cfg: DictConfig) -> float | None:
    """Hydra task: train, and return val/mIoU for sweepers."""
    from vanseg.tasks import train

    return train(cfg)["metrics"].get("val/mIoU")


def main() -> None:
    """Console-script entry point."""
    launch(run, "train")


if __name__ == "__main__":
    main()
