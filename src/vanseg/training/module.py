"""The LightningModule: loss, optimisation and validation metrics around a Segmentor."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from vanseg.accel.banded_loss import banded_cross_entropy
from vanseg.checkpoint.file import CKPT_KEY, make_entry
from vanseg.data.classes import IGNORE_INDEX
from vanseg.errors import VansegError
from vanseg.evaluation.metrics import SegmentationMetrics
from vanseg.inference.passes import predict_probs_tensor
from vanseg.models.heads.base import resize
from vanseg.models.segmentor import Segmentor
from vanseg.training.optim import OPTIMIZER_IMPLS, build_optimizer
from vanseg.training.pixel_weights import OhemSampler, pixel_losses, sampler_from_options

__all__ = [
    "SegmentationModule",
    "NonFiniteLossError",
    "banded_loss_default",
    "segmentation_loss",
    "loss_terms",
    "channels_last_default",
]

LOSS_AVERAGES = ("all_pixels", "valid_pixels")


log = logging.getLogger("vanseg")


class NonFiniteLossError(VansegError, RuntimeError):
    """The training loss became NaN or infinite."""


def segmentation_loss(
    logits: torch.Tensor,
    mask: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    average: str = "all_pixels",
    banded: bool = False,
    class_weight: Sequence[float] | None = None,
    sampler: OhemSampler | None = None,
) -> torch.Tensor:
    """Cross-entropy of logits resized (bilinear) to the label size.

    Args:
        logits: (B, K, h, w) head output.
        mask: (B, H, W) labels, ``ignore_index`` for ignored pixels.
        average: ``"all_pixels"`` divides by every pixel, ignored ones included, as the
            original does (docs/reference.md §3.9); ``"valid_pixels"`` by the labelled ones only.
        banded: Compute it in bands of output rows without materialising the resized logits
            (:func:`vanseg.accel.banded_loss.banded_cross_entropy`; same value up to float
            rounding, much less memory traffic on CPU). Not with ``class_weight`` or
            ``sampler``: those use the materialised logits.
        class_weight: Per-class weights of the pixel losses (mmseg's ``class_weight``).
        sampler: OHEM pixel selection (`vanseg.training.pixel_weights`).
    """
    if average not in LOSS_AVERAGES:
        raise ValueError(f"loss average must be one of {LOSS_AVERAGES}, got {average!r}")
    weighted = class_weight is not None or sampler is not None
    if banded and not weighted:
        total = banded_cross_entropy(logits, mask, ignore_index)
        if average == "all_pixels":
            return total / mask.numel()
        return total / (mask != ignore_index).sum().clamp_min(1)
    # NCHW before the resize: cross-entropy over channels of a channels_last map would copy
    # the full-size logits to NCHW (cheap here at 1/4 or 1/8 size; a no-op for NCHW).
    logits = resize(logits.contiguous(), mask.shape[-2:]).float()
    if weighted:
        losses = pixel_losses(logits, mask, ignore_index, class_weight, sampler)
    else:
        losses = F.cross_entropy(logits, mask, ignore_index=ignore_index, reduction="none")
    if average == "all_pixels":
        return losses.mean()
    return losses.sum() / (mask != ignore_index).sum().clamp_min(1)


def loss_terms(
    model: Segmentor,
    images: torch.Tensor,
    mask: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    average: str = "all_pixels",
    banded: bool = False,
    class_weight: Sequence[float] | None = None,
    sampler: OhemSampler | None = None,
) -> dict[str, torch.Tensor]:
    """``{"decode": loss}`` plus ``"aux"`` when the model has an auxiliary head.

    ``class_weight`` applies to both heads; the OHEM ``sampler`` to the decode head only
    (mmseg configures it per head, and its OHEM configs set it on the decode head).

    One function for the forward pass and the losses, so that ``module.compile=true`` compiles
    them together: inductor then fuses the resize to label size into the cross-entropy
    instead of materialising (B, K, H, W) logits and their gradient.
    """
    out = model.forward_train(images)
    args = (ignore_index, average, banded, class_weight)
    terms = {"decode": segmentation_loss(out["logits"], mask, *args, sampler)}
    if "aux_logits" in out:
        terms["aux"] = segmentation_loss(out["aux_logits"], mask, *args)
    return terms


def channels_last_default(device: torch.device) -> bool:
    """``module.channels_last=auto``: NHWC on CUDA (cuDNN) and CPU (oneDNN), NCHW elsewhere.

    On CPU a van_tiny + Light-Ham step (batch 2, 512x512) measured 1.2x faster in NHWC once the
    loss resizes NCHW logits (``python -m vanseg.tools.benchmark --train`` measures both).
    """
    return device.type in ("cuda", "cpu")


def banded_loss_default(device: torch.device) -> bool:
    """``module.banded_loss=auto``: on CPU, where the full-size resized logits cost a quarter
    of a training step in memory traffic (``vanseg.tools.benchmark --train``); elsewhere the
    materialised loss (one fused kernel per op on GPUs, no per-band launches)."""
    return device.type == "cpu"


def step_seed(seed: int, step: int, rank: int) -> int:
    """Seed of the model's random draws (dropout, drop path, NMF bases) at one training step."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


class SegmentationModule(pl.LightningModule):
    """Trains a :class:`Segmentor` the way the VAN-Segmentation recipes do.

    Loss: cross-entropy on the decode logits plus ``aux_weight`` x that of the auxiliary
    logits. Validation: whole-image inference, logits resized to the original label size,
    confusion matrix summed over the dataset (and over ranks), mmseg's mIoU/mAcc/aAcc.

    Exact resume: the torch RNG is re-seeded from ``(seed, step, rank)`` before every
    training step, so the model's random draws depend on the step alone, not on what ran
    before (validation, a restart); the data stream is resumed by the DataModule.

    Args:
        model: The segmentor.
        optimizer: Partial optimizer (lr, weight decay, ...) called with parameter groups.
        scheduler: Partial ``(optimizer, max_steps) -> LRScheduler``, stepped every step.
        num_classes: Classes K (for the metric).
        ignore_index: Label of ignored pixels.
        aux_weight: Weight of the auxiliary loss.
        loss_average: See :func:`segmentation_loss`.
        no_decay: Weight-decay exemption policy (:func:`vanseg.training.optim.param_groups`).
        class_names: Names for the per-class metrics; ``class_<i>`` if None.
        seed: Base seed of the per-step model randomness.
        run_config: Resolved run configuration stored in every checkpoint (``vanseg`` key);
            its ``model`` entry rebuilds the model (``vanseg.load_model``).
        compile: ``torch.compile`` the forward pass and loss of the training step (the
            parameters and checkpoint keys stay those of ``model``).
        channels_last: NHWC weights and images in training: ``True``, ``False`` or ``"auto"``
            (:func:`channels_last_default` of the device).
        optimizer_impl: Optimizer kernel: ``auto`` (fused where the device has it), ``fused``,
            ``foreach`` or ``for_loop`` (see ``vanseg.training.optim.optimizer_options``).
        banded_loss: Cross-entropy in bands of rows without the full-size resized logits:
            ``True``, ``False`` or ``"auto"`` (:func:`banded_loss_default`); not used with
            ``compile`` (inductor fuses the resize into the loss itself), nor with
            ``class_weight`` or ``sampler`` (logged once).
        class_weight: Per-class loss weights, mmseg 0.x semantics (`vanseg.training.pixel_weights`).
        sampler: ``None`` or ``{"type": "ohem", "thresh": 0.7, "min_kept": 100000}``: mmseg's
            ``OHEMPixelSampler`` on the decode head.
    """

    def __init__(
        self,
        model: Segmentor,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler],
        num_classes: int,
        ignore_index: int = IGNORE_INDEX,
        aux_weight: float = 0.4,
        loss_average: str = "all_pixels",
        no_decay: str = "original",
        class_names: Sequence[str] | None = None,
        seed: int = 0,
        run_config: Mapping[str, Any] | None = None,
        compile: bool = False,
        channels_last: bool | str = "auto",
        optimizer_impl: str = "auto",
        banded_loss: bool | str = "auto",
        class_weight: Sequence[float] | None = None,
        sampler: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if class_weight is not None:
            class_weight = [float(w) for w in class_weight]
            if len(class_weight) != num_classes:
                raise ValueError(
                    f"module.class_weight has {len(class_weight)} values for {num_classes} classes"
                )
        sampler = None if sampler is None else dict(sampler)
        self.sampler = sampler_from_options(sampler)
        if loss_average not in LOSS_AVERAGES:
            raise ValueError(
                f"module.loss_average must be one of {LOSS_AVERAGES}, got {loss_average!r}"
            )
        if channels_last not in (True, False, "auto"):
            raise ValueError(
                f"module.channels_last must be true, false or auto, got {channels_last!r}"
            )
        if banded_loss not in (True, False, "auto"):
            raise ValueError(f"module.banded_loss must be true, false or auto, got {banded_loss!r}")
        if optimizer_impl not in OPTIMIZER_IMPLS:
            raise ValueError(
                f"module.optimizer_impl must be one of {OPTIMIZER_IMPLS}, got {optimizer_impl!r}"
            )
        if model.num_classes != num_classes:
            raise ValueError(
                f"the model predicts {model.num_classes} classes but the data has {num_classes}"
            )
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler", "run_config"])
        self.model = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.class_names = list(class_names or [f"class_{i}" for i in range(num_classes)])
        self.run_config = dict(run_config or {})
        self.val_metrics = SegmentationMetrics(num_classes, ignore_index)
        self.last_val_results: dict[str, Any] = {}
        #: The step of the last real validation (-1: none yet; the sanity check does not count).
        self.validated_step = -1
        self.wandb_run_id: str | None = None
        self._compiled_loss: Callable[..., dict[str, torch.Tensor]] | None = None
        self._told_unbanded = False

    def configure_model(self) -> None:
        # Before the strategy moves the model and wraps it in DDP (its buckets keep the layout).
        if self._channels_last(self.trainer.strategy.root_device):
            self.model.to(memory_format=torch.channels_last)

    def _channels_last(self, device: torch.device) -> bool:
        setting = self.hparams.channels_last
        return channels_last_default(device) if setting == "auto" else bool(setting)

    def _loss_terms(self, images: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        args = (self.hparams.ignore_index, self.hparams.loss_average)
        weights = {}
        if self.hparams.class_weight is not None or self.sampler is not None:
            weights = {"class_weight": self.hparams.class_weight, "sampler": self.sampler}
        if not self.hparams.compile:
            banded = self.hparams.banded_loss
            if banded == "auto":
                banded = banded_loss_default(images.device)
            if banded and weights and not self._told_unbanded:
                log.info(
                    "module.class_weight/sampler: the loss uses the full-size logits, not bands"
                )
                self._told_unbanded = True
            return loss_terms(
                self.model, images, mask, *args, bool(banded) and not weights, **weights
            )
        if self._compiled_loss is None:
            # A compiled function, not a compiled submodule: parameter names, checkpoints and
            # the DDP wrapper all keep seeing ``self.model``.
            self._compiled_loss = torch.compile(loss_terms)
        return self._compiled_loss(self.model, images, mask, *args, **weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, mask = batch["image"], batch["mask"]
        if self._channels_last(self.device):
            images = images.contiguous(memory_format=torch.channels_last)
        terms = self._loss_terms(images, mask)
        decode = terms["decode"]
        loss = decode
        if "aux" in terms:
            aux = terms["aux"]
            loss = loss + self.hparams.aux_weight * aux
            self.log("train/aux_loss", aux.detach())
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at step {self.global_step}; stopping. The last "
                "checkpoint written before this step holds finite weights."
            )
        bs = images.shape[0]
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=bs)
        self.log("train/decode_loss", decode.detach(), batch_size=bs)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], prog_bar=True, batch_size=bs)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(
            self.model,
            self.optimizer_factory,
            self.hparams.no_decay,
            impl=self.hparams.optimizer_impl,
        )
        max_steps = self.trainer.max_steps
        if max_steps is None or max_steps <= 0:
            raise ValueError("training is iteration based: set trainer.max_steps > 0")
        self._configured_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        scheduler = self.scheduler_factory(optimizer, max_steps=max_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    def on_train_start(self) -> None:
        self._apply_configured_lr()
        dm = getattr(self.trainer, "datamodule", None)
        per_gpu = getattr(dm, "batch_size_per_gpu", None)
        if per_gpu is not None:
            world = self.trainer.world_size * self.trainer.accumulate_grad_batches
            for logger in self.loggers:
                logger.log_hyperparams(
                    {"global_batch_size": per_gpu * world, "batch_size_per_gpu": per_gpu}
                )

    def _apply_configured_lr(self) -> None:
        """On resume, the configured base lr wins over the one restored from the checkpoint.

        Lightning restores the scheduler's ``base_lrs`` (and the optimizer's ``initial_lr``)
        from the checkpoint, so ``optimizer.lr=...`` on resume would be recorded but ignored.
        The schedule continues from the restored step with the configured base lr (and the
        configured ``max_steps``, which the schedule was built with).
        """
        scheduler = self.lr_schedulers()
        configured = getattr(self, "_configured_lrs", None)
        if scheduler is None or configured is None or self.global_step == 0:
            return
        if list(scheduler.base_lrs) != configured:
            log.warning(
                "resumed with optimizer.lr=%s (the checkpoint had %s): the schedule continues "
                "from step %d with the new base lr",
                configured[0],
                scheduler.base_lrs[0],
                self.global_step,
            )
        # The lr of the current step from the configured schedule (unchanged settings give
        # the restored value exactly: the same formula at the same step).
        scheduler.base_lrs = list(configured)
        groups = self.optimizers(use_pl_optimizer=False).param_groups
        for group, base, factor in zip(groups, configured, scheduler.lr_lambdas, strict=True):
            group["initial_lr"] = base
            group["lr"] = base * factor(scheduler.last_epoch)
        scheduler._last_lr = [group["lr"] for group in groups]

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        torch.manual_seed(step_seed(self.hparams.seed, self.global_step, self.global_rank))

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        # The inference code of eval.py and predict.py: logits at the original label size.
        probs = predict_probs_tensor(self.model, batch["image"], batch["mask"].shape[-2:])
        self.val_metrics.update(probs.argmax(1), batch["mask"])

    def on_validation_epoch_end(self) -> None:
        results = self.val_metrics.compute()  # a collective under DDP: every rank calls it
        self.val_metrics.reset()
        for key in ("mIoU", "mAcc", "aAcc"):
            self.log(f"val/{key}", float(results[key]), prog_bar=key == "mIoU", sync_dist=False)
        for name, iou in zip(self.class_names, results["IoU"].tolist(), strict=True):
            if not math.isnan(iou):
                self.log(f"val/IoU/{name}", iou, sync_dist=False)
        if not self.trainer.sanity_checking:  # the sanity check's 2 batches are no result
            self.last_val_results = results
            self.validated_step = self.global_step

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CKPT_KEY] = make_entry(
            self.run_config.get("model"), config=self.run_config, wandb_run_id=self.wandb_run_id
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.wandb_run_id = checkpoint.get(CKPT_KEY, {}).get("wandb_run_id")
