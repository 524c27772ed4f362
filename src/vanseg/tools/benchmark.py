"""Speed of the fast paths against the plain eager fp32 model, measured in one process.

    python -m vanseg.tools.benchmark backbone=van_tiny head=light_ham [--train] [--compile]
        [--device cuda] [--threads 2] [--rounds 10] [--json out.json]

Inference (eval, ``--batch`` images of 3xSxS, default 1): the plain eager float32 NCHW
segmentor (the original's speed) and :func:`vanseg.optimize` at each ``--precisions`` (plus
compiled variants with ``--compile``). Training (``--train``, batch 2): forward + loss +
backward + AdamW step of the plain model (for-loop AdamW) and of the training levers of
``module.*`` (compile, fused AdamW, channels_last; `vanseg.training.module`).

Every configuration gets ``--warmup`` untimed calls; then ``--rounds`` rounds each time every
configuration once, in turn (interleaved, so load changes on a shared machine hit all alike).
The table gives the median, the interquartile range, the ratio ``plain median / median``,
the peak memory of one extra call (CUDA allocator peak above the memory in use before it; on
CPU the peak rise of the resident size, sampled every millisecond) and the largest logit
difference from the plain model, relative to its largest logit (same NMF seed). Below the table,
the kernels each configuration ran: fused oneDNN ops or the plain ops standing in where this CPU
lacks them (:mod:`vanseg.accel.kernels`), Winograd tiles, phase-split dilated convs.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from vanseg.accel import kernels
from vanseg.accel.optimize import PRECISIONS, max_relative_difference, optimize
from vanseg.config.compose import NO_PRETRAINED, compose_config, model_config
from vanseg.models.build import build_model_from_config
from vanseg.models.segmentor import Segmentor
from vanseg.training.module import banded_loss_default, loss_terms
from vanseg.training.optim import optimizer_options
from vanseg.utils.atomic import atomic_write_text
from vanseg.utils.cli import split_overrides, user_errors

__all__ = ["compare", "inference_configs", "training_configs", "benchmark", "main"]

Step = Callable[[], object]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (2**12) / 2**20  # resident pages of 4 KiB


def peak_memory_mb(fn: Step, device: torch.device) -> float:
    """Peak memory one call of ``fn`` adds to what is in use before it, in MiB."""
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    if not Path("/proc/self/statm").exists():
        return float("nan")
    before, peak, done = _rss_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], _rss_mb()) - before


def compare(
    configs: dict[str, Step], device: torch.device, warmup: int, rounds: int
) -> dict[str, list[float]]:
    """Warm every config up, then time them interleaved: ``rounds`` times each, in turn (ms)."""
    for fn in configs.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(rounds):
        for name, fn in configs.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def _stats(times: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {"median_ms": statistics.median(times), "iqr_ms": q[2] - q[0], "min_ms": min(times)}


def inference_configs(
    model: Segmentor, precisions: Sequence[str], compile: bool
) -> dict[str, torch.nn.Module]:
    """``plain fp32`` (eager, NCHW) and ``fast <precision>`` (+ ``compiled``) modules."""
    configs: dict[str, torch.nn.Module] = {"plain fp32": model.eval()}
    for precision in precisions:
        configs[f"fast {precision}"] = optimize(model, precision)  # type: ignore[arg-type]
        if compile:
            configs[f"fast {precision} compiled"] = optimize(model, precision, compile=True)  # type: ignore[arg-type]
    return configs


@dataclass(frozen=True)
class TrainingLevers:
    """One training configuration: the ``module.*`` switches and the trainer precision."""

    optimizer: str = "for_loop"  # module.optimizer_impl
    channels_last: bool = False  # module.channels_last
    compile: bool = False  # module.compile
    precision: str = "32"  # trainer.precision (32 or bf16-mixed)
    banded_loss: bool = False  # module.banded_loss


def _train_step(
    model: Segmentor, levers: TrainingLevers, images: torch.Tensor, labels: torch.Tensor
) -> Step:
    """One forward + loss + backward + AdamW step of ``model`` prepared with ``levers``."""
    model = copy.deepcopy(model).train()
    options = optimizer_options(levers.optimizer, model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-5, weight_decay=0.01, **options)
    if levers.channels_last:
        model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    losses = (
        torch.compile(loss_terms)
        if levers.compile
        else partial(loss_terms, banded=levers.banded_loss)
    )
    amp = (
        torch.autocast(images.device.type, dtype=torch.bfloat16)
        if levers.precision == "bf16-mixed"
        else nullcontext()
    )

    def step() -> None:
        with amp:
            terms = losses(model, images, labels)
        loss = terms["decode"] + 0.4 * terms["aux"] if "aux" in terms else terms["decode"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def training_configs(
    model: Segmentor, device: torch.device, compile: bool
) -> dict[str, TrainingLevers]:
    """The plain step and the training levers worth comparing on ``device``."""
    configs = {
        "plain fp32": TrainingLevers(optimizer="for_loop"),
        "fused AdamW": TrainingLevers(optimizer="fused"),
        "fused AdamW + channels_last": TrainingLevers(optimizer="fused", channels_last=True),
    }
    if banded_loss_default(device):
        configs["fused AdamW + channels_last + banded loss"] = TrainingLevers(
            optimizer="fused", channels_last=True, banded_loss=True
        )
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        configs["fused AdamW + channels_last + bf16-mixed"] = TrainingLevers(
            optimizer="fused", channels_last=True, precision="bf16-mixed"
        )
    if compile:
        configs["compiled + fused AdamW"] = TrainingLevers(optimizer="fused", compile=True)
    return configs


def benchmark(
    model: Segmentor,
    device: torch.device,
    size: int = 512,
    warmup: int = 3,
    rounds: int = 10,
    precisions: Sequence[str] = ("fp32", "bf16"),
    compile: bool = False,
    train: bool = False,
    train_batch: int = 2,
    batch: int = 1,
) -> list[dict]:
    """One row per configuration: times, ratio to the plain model, peak memory, logit diff."""
    model = model.to(device).eval()
    rows: list[dict] = []
    images = torch.randn(batch, 3, size, size, device=device)
    modules = inference_configs(model, precisions, compile)
    outputs, ran = {}, {}
    with torch.inference_mode():
        for name, module in modules.items():
            torch.manual_seed(0)
            with kernels.recording() as counts:
                outputs[name] = module(images)
            ran[name] = dict(sorted(counts.items()))
        configs = {name: (lambda m=m: m(images)) for name, m in modules.items()}
        times = compare(configs, device, warmup, rounds)
        for name, fn in configs.items():
            rows.append(
                {
                    "mode": "inference",
                    "config": name,
                    "batch": batch,
                    **_stats(times[name]),
                    "peak_mem_mb": peak_memory_mb(fn, device),
                    "max_rel_diff": max_relative_difference(outputs["plain fp32"], outputs[name]),
                    "kernels": ran[name],
                }
            )
    del modules, outputs, configs
    if train:
        batch = torch.randn(train_batch, 3, size, size, device=device)
        labels = torch.randint(0, model.num_classes, (train_batch, size, size), device=device)
        steps = {
            name: _train_step(model, levers, batch, labels)
            for name, levers in training_configs(model, device, compile).items()
        }
        times = compare(steps, device, max(1, warmup - 1), max(3, rounds // 2))
        for name, fn in steps.items():
            rows.append(
                {
                    "mode": "train step",
                    "config": name,
                    "batch": train_batch,
                    **_stats(times[name]),
                    "peak_mem_mb": peak_memory_mb(fn, device),
                    "max_rel_diff": None,
                }
            )
    for row in rows:
        plain = next(r for r in rows if r["mode"] == row["mode"] and r["config"] == "plain fp32")
        row["ratio"] = plain["median_ms"] / row["median_ms"]
    return rows


def _table(rows: list[dict], title: str) -> Table:
    table = Table(title=title)
    for col in ("mode", "config", "median ms", "IQR ms", "ratio", "peak MiB", "max logit diff"):
        table.add_column(col, justify="left" if col in ("mode", "config") else "right")
    for r in rows:
        diff = "-" if r["max_rel_diff"] is None else f"{r['max_rel_diff']:.1e}"
        table.add_row(
            r["mode"],
            r["config"],
            f"{r['median_ms']:.1f}",
            f"{r['iqr_ms']:.1f}",
            f"{r['ratio']:.2f}x",
            f"{r['peak_mem_mb']:.0f}",
            diff,
        )
    return table


def markdown_table(rows: list[dict]) -> str:
    """The table as Markdown (``--markdown``), as pasted into the README."""
    lines = [
        "| mode | config | median ms | IQR ms | ratio | peak MiB | max logit diff |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        diff = "-" if r["max_rel_diff"] is None else f"{r['max_rel_diff']:.1e}"
        lines.append(
            f"| {r['mode']} | {r['config']} | {r['median_ms']:.1f} | {r['iqr_ms']:.1f} | "
            f"{r['ratio']:.2f}x | {r['peak_mem_mb']:.0f} | {diff} |"
        )
    return "\n".join(lines)


def kernels_report(rows: list[dict]) -> str:
    """Which special kernels each inference configuration ran, with call counts per image
    (fused oneDNN ops or their plain fallbacks, Winograd tiles, phase-split convs)."""
    lines = ["kernels that ran (calls per image):"]
    for r in rows:
        if r.get("kernels") is not None:
            used = ", ".join(f"{k} x{n}" for k, n in r["kernels"].items()) or "plain ops only"
            lines.append(f"  {r['config']}: {used}")
    return "\n".join(lines)


@user_errors("python -m vanseg.tools.benchmark")
def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        prog="python -m vanseg.tools.benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--train", action="store_true", help="also compare training steps")
    parser.add_argument("--compile", action="store_true", help="add torch.compile variants")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--precisions", default=None, help="comma list of fp32,bf16,fp16 (default by device)"
    )
    parser.add_argument("--size", type=int, default=512, help="square input size")
    parser.add_argument("--batch", type=int, default=1, help="inference batch size")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    args, overrides = split_overrides(parser, argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible; use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    default = "fp32,bf16,fp16" if device.type == "cuda" else "fp32,bf16"
    precisions = (args.precisions or default).split(",")
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        parser.error(f"--precisions: unknown {unknown}; choose from {sorted(PRECISIONS)}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    cfg = compose_config([NO_PRETRAINED, *overrides], return_hydra_config=True)
    model = build_model_from_config(model_config(cfg))
    rows = benchmark(
        model,
        device,
        args.size,
        args.warmup,
        args.rounds,
        precisions,
        args.compile,
        args.train,
        batch=args.batch,
    )
    name = f"{cfg.hydra.runtime.choices.backbone} + {cfg.hydra.runtime.choices.head}"
    hardware = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    title = (
        f"{name} on {hardware} ({args.batch}x{args.size}x{args.size}, {args.warmup} warm-up, "
        f"{args.rounds} interleaved rounds)"
    )
    Console(width=None if Console().is_terminal else 160).print(_table(rows, title))
    print(kernels_report(rows))
    if args.markdown:
        print(f"{title}:\n\n{markdown_table(rows)}")
    if args.json:
        atomic_write_text(
            args.json,
            json.dumps({"model": name, "hardware": hardware, "rows": rows}, indent=2),
            overwrite=args.overwrite,
        )
    return rows


if __name__ == "__main__":
    main()
