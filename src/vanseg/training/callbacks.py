"""Lightning callbacks: step progress bar and validation images for loggers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.loggers import WandbLogger

__all__ = ["StepProgressBar", "LogValidationImages"]


class StepProgressBar(RichProgressBar):
    """Rich progress bar counting optimizer steps up to ``max_steps`` (with loss, lr, ETA)."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        for key, value in metrics.items():  # learning rates are ~1e-4: "0.000" with 3 decimals
            if key.endswith("lr") and isinstance(value, (int, float)):
                metrics[key] = f"{value:.2e}"
        return metrics

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        return f"step {trainer.global_step}/{trainer.max_steps}"

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.progress is not None and self.train_progress_bar_id is not None:
            self.progress.update(
                self.train_progress_bar_id,
                description=self._get_train_description(trainer.current_epoch),
            )


def _denormalise(image: torch.Tensor, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    array = image.detach().float().cpu().permute(1, 2, 0).numpy() * std + mean
    return np.clip(array, 0, 255).astype(np.uint8)


class LogValidationImages(pl.Callback):
    """Logs the first ``num_images`` validation images of rank 0 with prediction and
    ground-truth mask overlays to wandb (docs/pitfalls.md G1, G4); other loggers are skipped.

    Args:
        num_images: Images per validation run.
    """

    def __init__(self, num_images: int = 4) -> None:
        self.num_images = num_images

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx >= self.num_images or trainer.sanity_checking or not trainer.is_global_zero:
            return
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not loggers:
            return
        import wandb

        dm = trainer.datamodule
        norm = dm.val_transform
        mean, std = np.asarray(norm.mean, np.float32), np.asarray(norm.std, np.float32)
        mask = batch["mask"][0]
        with torch.no_grad():
            logits = pl_module.model(batch["image"][:1])
            logits = torch.nn.functional.interpolate(
                logits, size=mask.shape[-2:], mode="bilinear", align_corners=False
            )
        pred = logits.argmax(1)[0].cpu().numpy().astype(np.uint8)
        image = torch.nn.functional.interpolate(
            batch["image"][:1], size=mask.shape[-2:], mode="bilinear", align_corners=False
        )[0]
        labels = {i: n for i, n in enumerate(pl_module.class_names)}
        labels[255] = "ignore"
        wb_image = wandb.Image(
            _denormalise(image, mean, std),
            masks={
                "predictions": {"mask_data": pred, "class_labels": labels},
                "ground_truth": {
                    "mask_data": mask.cpu().numpy().astype(np.uint8),
                    "class_labels": labels,
                },
            },
            caption=str(batch.get("name", [""])[0]),
        )
        for logger in loggers:
            logger.experiment.log(
                {f"val/images/{batch_idx}": wb_image, "trainer/global_step": trainer.global_step}
            )
