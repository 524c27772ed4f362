"""Validation overlays: the panel's pixels, and the TensorBoard event they are logged as."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from vanseg.training.callbacks import LogValidationImages, overlay_panel

PALETTE = np.array([[255, 0, 0], [0, 0, 255]], dtype=np.uint8)


def test_overlay_panel_by_hand() -> None:
    image = np.full((1, 2, 3), 100, dtype=np.uint8)
    pred = np.array([[0, 1]])
    label = np.array([[1, 255]])
    panel = overlay_panel(image, pred, label, PALETTE, opacity=0.5)
    assert panel.shape == (1, 6, 3)
    assert panel[0, :2].tolist() == [[100, 100, 100]] * 2
    # 0.5 * 100 + 0.5 * 255 = 177.5 -> 178 (half to even); 0.5 * 100 = 50
    assert panel[0, 2:4].tolist() == [[178, 50, 50], [50, 50, 178]]
    assert panel[0, 4:6].tolist() == [[50, 50, 178], [100, 100, 100]]  # ignore: plain image


class _ConstantModel(torch.nn.Module):
    """Predicts class 1 everywhere, at a quarter of the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        logits = torch.zeros(b, 2, h // 4, w // 4)
        logits[:, 1] = 1.0
        return logits


def test_overlays_go_to_tensorboard(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = TensorBoardLogger(tmp_path, name="tb", version="")
    loggers = [CSVLogger(tmp_path, name="csv", version=""), tb]
    mean, std = (10.0, 20.0, 30.0), (2.0, 2.0, 2.0)
    trainer = SimpleNamespace(
        sanity_checking=False,
        is_global_zero=True,
        loggers=loggers,
        global_step=7,
        datamodule=SimpleNamespace(
            val_transform=SimpleNamespace(mean=mean, std=std), palette=[(255, 0, 0), (0, 0, 255)]
        ),
    )
    module = SimpleNamespace(model=_ConstantModel(), class_names=["a", "b"])
    image = torch.zeros(1, 3, 8, 12)  # normalised zeros = the mean colour
    mask = torch.zeros(1, 8, 12, dtype=torch.long)
    mask[0, :, 6:] = 255
    callback = LogValidationImages(num_images=1, opacity=0.5)
    callback.on_validation_batch_end(trainer, module, None, {"image": image, "mask": mask}, 0)
    callback.on_validation_batch_end(trainer, module, None, {"image": image, "mask": mask}, 1)
    tb.experiment.flush()

    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == ["val/images/0"]  # num_images=1: batch 1 is skipped
    (event,) = events.Images("val/images/0")
    assert event.step == 7 and (event.width, event.height) == (36, 8)
    from io import BytesIO

    from PIL import Image

    panel = np.asarray(Image.open(BytesIO(event.encoded_image_string)).convert("RGB"))
    assert panel[0, 0].tolist() == [10, 20, 30]  # denormalised image
    # 0.5 * [10, 20, 30] + 0.5 * colour, rounded half to even: 142.5 -> 142, 132.5 -> 132
    assert panel[0, 12].tolist() == [5, 10, 142]  # prediction: class 1 (blue)
    assert panel[0, 24].tolist() == [132, 10, 15]  # label: class 0 (red)
    assert panel[0, 35].tolist() == [10, 20, 30]  # ignored label pixel
