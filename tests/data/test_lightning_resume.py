"""Under a Lightning Trainer, resuming from a checkpoint continues the training stream exactly."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from vanseg.config.compose import compose_config


class NameRecorder(pl.LightningModule):
    """A 1x1-conv segmenter that records the names of the samples it trains on."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 1)
        self.seen: list[list[str]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(list(batch["name"]))
        logits = self.conv(batch["image"])
        return torch.nn.functional.cross_entropy(logits, batch["mask"], ignore_index=255)

    def validation_step(self, batch, batch_idx) -> None:
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def datamodule(cache):
    overrides = [
        "data=synthetic",
        f"data.cache_dir={cache}",
        "data.num_train=6",
        "data.num_val=2",
        "data.num_classes=6",
        "data.num_workers=0",
        "data.scale=[256,64]",
        "data.crop_size=[64,64]",
    ]
    return instantiate(compose_config(overrides).data)


def trainer(root, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_steps=5,
        limit_val_batches=0,
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,  # the DataModule's samplers stay in place
        **kwargs,
    )


# Lightning's own note about resuming into a folder that holds the checkpoint is expected here.
@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_resume_from_checkpoint_continues_the_sample_stream(tmp_path):
    cache = tmp_path / "cache"

    def checkpoint(folder: str) -> pl.callbacks.ModelCheckpoint:
        return pl.callbacks.ModelCheckpoint(tmp_path / folder, every_n_train_steps=3, save_top_k=-1)

    full = NameRecorder()
    trainer(tmp_path / "a", callbacks=[checkpoint("ckpt")]).fit(full, datamodule=datamodule(cache))
    path = tmp_path / "ckpt" / "epoch=0-step=3.ckpt"
    state = torch.load(path, weights_only=False)["SyntheticDataModule"]
    assert state == {"seed": 0, "train_samples_seen": 6}  # 3 steps of 2 samples

    resumed = NameRecorder()
    trainer(tmp_path / "b", callbacks=[checkpoint("ckpt")]).fit(
        resumed, datamodule=datamodule(cache), ckpt_path=path
    )
    assert len(full.seen) == 5
    assert resumed.seen == full.seen[3:]
