"""Lightning overhead: the same training step in ``Trainer.fit`` and in a plain PyTorch loop.

    python -m vanseg.tools.overhead backbone=van_tiny head=light_ham [--size 256 --steps 30]

Both loops train copies of one model on one fixed in-memory batch with the recipe's optimizer
(parameter groups included) and poly schedule; the Lightning run uses the real
SegmentationModule (loss, logging, non-finite check, per-step seeding). The time of each step
is measured end to end (from one step's end to the next), the first ``--warmup`` steps are
dropped, and the medians are compared.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Sequence

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader, Dataset

from vanseg.config.compose import NO_PRETRAINED, compose_config, model_config
from vanseg.models.build import build_model_from_config
from vanseg.training.module import SegmentationModule, banded_loss_default, segmentation_loss
from vanseg.training.optim import build_optimizer
from vanseg.utils.cli import split_overrides, user_errors

__all__ = ["plain_step_times", "lightning_step_times"]


class _SameBatch(Dataset):
    """``length`` copies of one sample (collated into the fixed batch)."""

    def __init__(self, image: torch.Tensor, mask: torch.Tensor, length: int) -> None:
        self.image, self.mask, self.length = image, mask, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.image, "mask": self.mask}


class _StepTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._last = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self._last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        self.times.append(now - self._last)
        self._last = now


def plain_step_times(model, optimizer, scheduler, batch, steps: int, aux_weight: float):
    """Per-step seconds of a hand-written loop doing what the module's training step does."""
    model.train()
    banded = banded_loss_default(batch["image"].device)  # as module.banded_loss=auto
    times, last = [], time.perf_counter()
    for _ in range(steps):
        out = model.forward_train(batch["image"])
        loss = segmentation_loss(out["logits"], batch["mask"], banded=banded)
        if "aux_logits" in out:
            aux = segmentation_loss(out["aux_logits"], batch["mask"], banded=banded)
            loss = loss + aux_weight * aux
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return times


def lightning_step_times(module: SegmentationModule, batch, steps: int) -> list[float]:
    """Per-step seconds of ``Trainer.fit`` on a loader that yields ``batch`` every step."""
    bs = batch["image"].shape[0]
    loader = DataLoader(
        _SameBatch(batch["image"][0], batch["mask"][0], bs * steps), batch_size=bs, shuffle=False
    )
    timer = _StepTimer()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        logger=False,
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, train_dataloaders=loader)
    return timer.times


@user_errors("python -m vanseg.tools.overhead")
def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        prog="python -m vanseg.tools.overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", type=int, default=256, help="square crop size")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args, overrides = split_overrides(parser, argv)
    cfg = compose_config([NO_PRETRAINED, *overrides])
    torch.manual_seed(0)
    model = build_model_from_config(model_config(cfg))
    k = model.num_classes
    batch = {
        "image": torch.randn(args.batch, 3, args.size, args.size),
        "mask": torch.randint(0, k, (args.batch, args.size, args.size)),
    }

    plain_model = copy.deepcopy(model)
    opt = build_optimizer(plain_model, instantiate(cfg.optimizer), cfg.module.no_decay)
    sched = instantiate(cfg.scheduler)(opt, max_steps=args.steps)
    plain = plain_step_times(plain_model, opt, sched, batch, args.steps, cfg.module.aux_weight)

    module = SegmentationModule(
        model, instantiate(cfg.optimizer), instantiate(cfg.scheduler), num_classes=k, **cfg.module
    )
    light = lightning_step_times(module, batch, args.steps)

    p = statistics.median(plain[args.warmup :])
    q = statistics.median(light[args.warmup :])
    result = {"plain_ms": p * 1e3, "lightning_ms": q * 1e3, "overhead_pct": 100 * (q - p) / p}
    print(
        f"{args.steps - args.warmup} timed steps, batch {args.batch}, {args.size}x{args.size}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"plain PyTorch loop: {result['plain_ms']:.1f} ms/step (median)")
    print(f"Lightning fit:      {result['lightning_ms']:.1f} ms/step (median)")
    print(f"overhead:           {result['overhead_pct']:+.1f}%")
    return result


if __name__ == "__main__":
    main()
