"""SegmentationMetrics under DDP: 2 CPU processes give exactly the single-process numbers."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchmetrics.classification import MulticlassJaccardIndex

from vanseg.evaluation.metrics import SegmentationMetrics

NUM_CLASSES = 6
NUM_IMAGES = 5  # odd: the ranks hold 3 and 2 images


def make_data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    data = []
    for i in range(NUM_IMAGES):
        shape = (1, 20 + i, 31 - i)
        label = torch.randint(0, NUM_CLASSES - 1, shape, generator=generator)  # class 5 absent
        label[torch.rand(shape, generator=generator) < 0.1] = 255
        pred = torch.randint(0, NUM_CLASSES, shape, generator=generator)
        data.append((pred, label))
    return data


def worker(rank: int, world_size: int, port: int, queue: mp.SimpleQueue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    metric = SegmentationMetrics(NUM_CLASSES)
    # The stock metric it subclasses, synced the same way (its state is the same `confmat`).
    stock = MulticlassJaccardIndex(num_classes=NUM_CLASSES, average="macro", ignore_index=255)
    for pred, label in make_data()[rank::world_size]:  # every image on exactly one rank
        metric.update(pred, label)
        stock.update(pred, label)
    result = metric.compute()  # a collective: every rank calls it
    stock_miou = stock.compute().item()
    # Plain lists: shared-memory tensors cannot be read after the process has exited.
    queue.put((rank, result["confmat"].tolist(), result["mIoU"], stock_miou))
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one() -> None:
    single = SegmentationMetrics(NUM_CLASSES)
    for pred, label in make_data():
        single.update(pred, label)
    expected = single.compute()

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(worker, args=(2, free_port(), queue), nprocs=2, start_method="spawn")
    results = [queue.get() for _ in range(2)]
    for _, confmat, miou, stock_miou in results:
        assert confmat == expected["confmat"].tolist()
        assert miou == expected["mIoU"]
        # Class 5 is absent from the labels but predicted (IoU 0), so macro = mmseg's nanmean;
        # stock reduces in float32.
        assert stock_miou == pytest.approx(expected["mIoU"], rel=1e-6)
