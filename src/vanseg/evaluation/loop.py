"""The evaluation loop: images of a dataset through a model into the original's metric."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from rich.progress import track
from torch import nn

from vanseg.data.classes import IGNORE_INDEX
from vanseg.evaluation.metrics import SegmentationMetrics
from vanseg.inference.passes import predict_mask
from vanseg.inference.protocol import InferenceProtocol

__all__ = ["ImageHook", "evaluate_dataset"]

#: Called once per image after the metric update: ``(index, image, label, mask)``, where
#: ``image`` is RGB uint8 ``(H, W, 3)``, ``label`` the label array and ``mask`` the predicted
#: class indices ``(H, W)`` on the model's device (`vanseg.evaluation.image_report`).
ImageHook = Callable[[int, np.ndarray, np.ndarray, torch.Tensor], None]


def evaluate_dataset(
    model: nn.Module,
    dataset: Any,
    protocol: InferenceProtocol,
    indices: Iterable[int],
    ignore_index: int = IGNORE_INDEX,
    progress: bool = False,
    on_image: ImageHook | None = None,
) -> tuple[SegmentationMetrics, int]:
    """Update a metric with the given images of ``dataset``; returns it and the image count.

    ``dataset.load(i)`` must give the original RGB uint8 image and its label (class indices or
    ``ignore_index``) at the same size. No synchronisation happens here: ``compute()`` on the
    returned metric sums the confusion matrices of all processes. ``on_image`` sees every image
    after the metric has (per-image scores of ``report=true``); it does not change the metric.
    """
    device = next(model.parameters()).device
    metric = SegmentationMetrics(model.num_classes, ignore_index).to(device)
    indices = list(indices)
    count = 0
    for index in track(indices, description="Evaluating", disable=not progress):
        image, label = dataset.load(index)
        mask = predict_mask(model, image, protocol, out_size=label.shape)  # (H, W)
        target = torch.from_numpy(label.astype(np.int64)).to(device)
        metric.update(mask.unsqueeze(0), target.unsqueeze(0))
        if on_image is not None:
            on_image(index, image, label, mask)
        count += 1
    return metric, count
