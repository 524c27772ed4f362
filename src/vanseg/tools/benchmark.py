"""Inference latency, throughput, training step time and peak memory of a segmentor.

    python -m vanseg.tools.benchmark backbone=van_tiny head=light_ham [--train] [--json out.json]

Inference: eval mode, batch 1, 1x3x512x512, float32 and (where the device supports it)
bfloat16 autocast. Training (``--train``): forward + loss + backward + AdamW step on a batch
of 2 random 512x512 crops with random labels. Every measurement runs ``--warmup`` untimed
iterations, then ``--iters`` timed ones; the table gives the median and the spread
(interquartile range), images/s from the median, and the peak memory: the CUDA allocator's
peak on GPU; on CPU the process's peak resident size so far (it includes the Python process
and everything measured before, so it only grows down the table).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from vanseg.api import build_model_from_config
from vanseg.tools._cli import split_overrides
from vanseg.utils.atomic import atomic_write_text
from vanseg.utils.cli import user_errors
from vanseg.utils.config import NO_PRETRAINED, compose_config, model_config

__all__ = ["time_fn", "benchmark"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def time_fn(
    fn: Callable[[], object], device: torch.device, warmup: int, iters: int
) -> dict[str, float]:
    """Run ``fn`` ``warmup`` times, then time ``iters`` runs; median and IQR in milliseconds."""
    for _ in range(warmup):
        fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    peak = _peak_memory_mb(device)
    return {
        "median_ms": statistics.median(times),
        "iqr_ms": q[2] - q[0],
        "min_ms": min(times),
        "peak_mem_mb": peak,
    }


def _bf16_supported(device: torch.device) -> bool:
    return device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported())


def benchmark(
    model: torch.nn.Module,
    device: torch.device,
    size: int = 512,
    warmup: int = 5,
    iters: int = 20,
    train: bool = False,
    train_batch: int = 2,
) -> list[dict]:
    """Measure ``model`` (a Segmentor) and return one row per measurement."""
    model = model.to(device)
    rows = []
    images = torch.randn(1, 3, size, size, device=device)
    model.eval()
    for dtype in (torch.float32, torch.bfloat16):
        if dtype is torch.bfloat16 and not _bf16_supported(device):
            continue
        amp = torch.autocast(device.type, dtype=dtype) if dtype is torch.bfloat16 else nullcontext()

        def infer(amp=amp) -> None:
            with torch.inference_mode(), amp:
                model(images)

        stats = time_fn(infer, device, warmup, iters)
        rows.append(
            {
                "mode": "inference",
                "batch": 1,
                "dtype": str(dtype).split(".")[-1],
                **stats,
                "images_per_s": 1e3 / stats["median_ms"],
            }
        )
    if train:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=6e-5, weight_decay=0.01)
        batch = torch.randn(train_batch, 3, size, size, device=device)
        labels = torch.randint(0, model.num_classes, (train_batch, size, size), device=device)

        def step() -> None:
            out = model.forward_train(batch)
            loss = sum(
                w
                * F.cross_entropy(
                    F.interpolate(
                        out[k], size=labels.shape[1:], mode="bilinear", align_corners=False
                    ),
                    labels,
                    ignore_index=255,
                )
                for k, w in (("logits", 1.0), ("aux_logits", 0.4))
                if k in out
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        stats = time_fn(step, device, max(1, warmup // 2), max(3, iters // 2))
        rows.append(
            {
                "mode": "train step",
                "batch": train_batch,
                "dtype": "float32",
                **stats,
                "images_per_s": train_batch * 1e3 / stats["median_ms"],
            }
        )
    return rows


@user_errors("python -m vanseg.tools.benchmark")
def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        prog="python -m vanseg.tools.benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--train", action="store_true", help="also time a training step")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=512, help="square input size")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args, overrides = split_overrides(parser, argv)

    cfg = compose_config([NO_PRETRAINED, *overrides], return_hydra_config=True)
    model = build_model_from_config(model_config(cfg))
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rows = benchmark(model, device, args.size, args.warmup, args.iters, args.train)
    name = f"{cfg.hydra.runtime.choices.backbone} + {cfg.hydra.runtime.choices.head}"
    hardware = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    table = Table(
        title=f"{name} on {hardware} ({args.size}x{args.size}, "
        f"{args.warmup} warm-up + {args.iters} timed)"
    )
    for col in ("mode", "batch", "dtype", "median ms", "IQR ms", "images/s", "peak MiB"):
        table.add_column(col, justify="left" if col in ("mode", "dtype") else "right")
    for r in rows:
        table.add_row(
            r["mode"],
            str(r["batch"]),
            r["dtype"],
            f"{r['median_ms']:.1f}",
            f"{r['iqr_ms']:.1f}",
            f"{r['images_per_s']:.2f}",
            f"{r['peak_mem_mb']:.0f}",
        )
    Console(width=None if Console().is_terminal else 160).print(table)
    if args.json:
        atomic_write_text(
            args.json,
            json.dumps({"model": name, "hardware": hardware, "rows": rows}, indent=2),
            overwrite=args.overwrite,
        )
    return rows


if __name__ == "__main__":
    main()
