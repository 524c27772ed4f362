"""Lightning callbacks: step progress bar and validation images for loggers."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import RichModelSummary, RichProgressBar
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

from vanseg.data.classes import IGNORE_INDEX

__all__ = ["StepProgressBar", "LogValidationImages", "ModelSummary", "overlay_panel"]


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


class ModelSummary(RichModelSummary):
    """Rich layer table with real MACs instead of Lightning's FLOPs column.

    Lightning's column is all zeros unless the module has an ``example_input_array``, and its
    counter reports about twice the MACs the VAN tables print (docs/pitfalls.md J1). This
    summary drops that column and, with ``macs_input_size``, prints the torchprofile MACs of the
    segmentor (``pl_module.model``) on one ``1x3xHxW`` image in eval mode, the convention of
    ``python -m vanseg.tools.flops``. The count runs on rank 0 only and leaves the random
    number generators as they were (NMF bases draw random numbers), so training is unchanged.

    Args:
        max_depth: Depth of the layer table (0 prints nothing).
        macs_input_size: ``[H, W]`` of the MACs count; None prints no MACs.
    """

    def __init__(self, max_depth: int = 1, macs_input_size: Sequence[int] | None = None) -> None:
        super().__init__(max_depth)
        self.macs_input_size = tuple(int(s) for s in macs_input_size) if macs_input_size else None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._max_depth or not trainer.is_global_zero:
            return
        summary = self._summary(trainer, pl_module)
        columns = [(n, v) for n, v in summary._get_summary_data() if n != "FLOPs"]
        macs = self._macs(pl_module) if self.macs_input_size else None
        self._print(columns, summary.total_parameters, summary.trainable_parameters, macs)

    def _macs(self, pl_module: pl.LightningModule) -> int:
        from torchprofile import profile_macs

        model = getattr(pl_module, "model", pl_module)
        device = next(model.parameters()).device
        was_training = model.training
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchprofile warns about every op it does not count
            model.eval()
            try:
                image = torch.zeros(1, 3, *self.macs_input_size, device=device)
                return int(profile_macs(model, image))
            finally:
                model.train(was_training)

    def _print(
        self, columns: list[tuple[str, list[str]]], total: int, trainable: int, macs: int | None
    ) -> None:
        from rich import get_console
        from rich.table import Table

        table = Table(header_style="bold magenta")
        for name, _ in columns:
            table.add_column(name or " ", justify="right" if "Params" in name else "left")
        for row in zip(*(values for _, values in columns), strict=True):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        lines = [
            f"[bold]Trainable params[/]: {trainable:,}",
            f"[bold]Non-trainable params[/]: {total - trainable:,}",
            f"[bold]Total params[/]: {total:,}",
        ]
        if macs is not None:
            h, w = self.macs_input_size
            lines.append(
                f"[bold]MACs[/] (torchprofile, eval mode, 1x3x{h}x{w}): {macs:,} "
                f"({macs / 1e9:.2f} G)"
            )
        console.print("\n".join(lines))


def _denormalise(image: torch.Tensor, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    array = image.detach().float().cpu().permute(1, 2, 0).numpy() * std + mean
    return np.clip(array, 0, 255).astype(np.uint8)


def overlay_panel(
    image: np.ndarray,
    prediction: np.ndarray,
    label: np.ndarray,
    palette: np.ndarray,
    opacity: float = 0.5,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """``[image | prediction overlay | label overlay]`` side by side, ``(H, 3W, 3)`` uint8.

    An overlay is ``(1 - opacity) * image + opacity * palette[class]``, rounded; pixels labelled
    ``ignore_index`` keep the plain image in the label overlay.
    """

    def blend(mask: np.ndarray) -> np.ndarray:
        valid = mask != ignore_index
        colours = palette[np.where(valid, mask, 0)].astype(np.float32)
        mixed = (1.0 - opacity) * image.astype(np.float32) + opacity * colours
        out = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        return np.where(valid[..., None], out, image)

    return np.concatenate([image, blend(prediction), blend(label)], axis=1)


def _palette(datamodule: Any, num_classes: int) -> np.ndarray:
    from vanseg.data.classes import generic_palette

    colours = getattr(datamodule, "palette", None) or generic_palette(num_classes)
    return np.asarray(colours, dtype=np.uint8)


class LogValidationImages(pl.Callback):
    """Logs the first ``num_images`` validation images of rank 0 with prediction and
    ground-truth overlays (docs/pitfalls.md G1, G4): to wandb as an image with two mask layers,
    to TensorBoard as one ``[image | prediction | ground truth]`` picture per image (tag
    ``val/images/<i>``, step = optimizer step). Other loggers are skipped.

    Args:
        num_images: Images per validation run.
        opacity: Weight of the class colours in the TensorBoard overlays.
    """

    def __init__(self, num_images: int = 4, opacity: float = 0.5) -> None:
        self.num_images = num_images
        self.opacity = opacity

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
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        tb_loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not wandb_loggers and not tb_loggers:
            return

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
        rgb = _denormalise(image, mean, std)
        label = mask.cpu().numpy().astype(np.uint8)
        if tb_loggers:
            palette = _palette(dm, len(pl_module.class_names))
            panel = overlay_panel(rgb, pred, label, palette, self.opacity)
            for logger in tb_loggers:
                logger.experiment.add_image(
                    f"val/images/{batch_idx}", panel, trainer.global_step, dataformats="HWC"
                )
        if wandb_loggers:
            self._log_wandb(wandb_loggers, trainer, pl_module, batch, batch_idx, rgb, pred, label)

    @staticmethod
    def _log_wandb(loggers, trainer, pl_module, batch, batch_idx, rgb, pred, label) -> None:
        import wandb

        labels = {i: n for i, n in enumerate(pl_module.class_names)}
        labels[getattr(pl_module, "ignore_index", IGNORE_INDEX)] = "ignore"
        wb_image = wandb.Image(
            rgb,
            masks={
                "predictions": {"mask_data": pred, "class_labels": labels},
                "ground_truth": {"mask_data": label, "class_labels": labels},
            },
            caption=str(batch.get("name", [""])[0]),
        )
        for logger in loggers:
            logger.experiment.log(
                {f"val/images/{batch_idx}": wb_image, "trainer/global_step": trainer.global_step}
            )
