"""The evaluation loop: images of a dataset through a model into the original's metric."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from rich.progress import track
from torch import nn

from vanseg.data.classes import IGNORE_INDEX
from vanseg.evaluation.metrics import SegmentationMetrics
from vanseg.inference.passes import predict_mask
from vanseg.inference.protocol import InferenceProtocol

__all__ = ["evaluate_dataset"]


def evaluate_dataset(
    model: nn.Module,
    dataset: Any,
    protocol: InferenceProtocol,
    indices: Iterable[int],
    ignore_index: int = IGNORE_INDEX,
    progress: bool = False,
) -> tuple[SegmentationMetrics, int]:
    """Update a metric with the given images of ``dataset``; returns it and the image count.

    ``dataset.load(i)`` must give the original RGB uint8 image and its label (class indices or
    ``ignore_index``) at the same size. No synchronisation happens here: ``compute()`` on the
    returned metric sums the confusion matrices of all processes.
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
        count += 1
    return metric, count
