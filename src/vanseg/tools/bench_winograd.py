"""Winograd against ``F.conv2d`` on the dense 3x3 convs of UperNet (van_base, 512x512 input).

    python -m vanseg.tools.bench_winograd --threads 2 [--rounds 5 --shapes fpn_bottleneck]

For each shape (batch 1) the four variants run interleaved in one process: every round times
each variant once, and the table shows the median of the rounds. ``ratio`` is the time over
``F.conv2d`` fp32; ``rel diff`` is ``max |y - ref| / max |ref|`` against ``F.conv2d`` in fp32
(random weights and inputs). The 2048 -> 512 @ 128x128 conv takes over a second per call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vanseg.accel.optimize import max_relative_difference
from vanseg.accel.winograd import TILE_SIZES, WinogradConv2d
from vanseg.utils.cli import user_errors

__all__ = ["SHAPES", "ConvShape", "bench_shape", "main"]


@dataclass(frozen=True)
class ConvShape:
    """A 3x3 conv of the UperNet head: ``in_channels -> out_channels`` at ``size x size``."""

    name: str
    in_channels: int
    out_channels: int
    size: int

    @property
    def gmacs(self) -> float:
        return self.in_channels * self.out_channels * 9 * self.size**2 / 1e9


#: The dense 3x3 convs of van_base + UperNet at 512x512 (models/heads/upernet.py).
SHAPES = {
    s.name: s
    for s in (
        ConvShape("fpn_bottleneck", 2048, 512, 128),
        ConvShape("fpn_convs.0", 512, 512, 128),
        ConvShape("fpn_convs.1", 512, 512, 64),
        ConvShape("fpn_convs.2", 512, 512, 32),
        ConvShape("bottleneck", 2560, 512, 16),
    )
}

VARIANTS = ("conv fp32", "winograd fp32", "conv bf16", "winograd bf16")


def _autocast(fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fn()

    return run


def bench_shape(
    shape: ConvShape, rounds: int, tile: int, autocast_tile: int, workspace_mib: int
) -> dict[str, dict[str, float]]:
    """``{variant: {"ms": median, "ratio": vs conv fp32, "rel_diff": vs conv fp32}}``."""
    torch.manual_seed(0)
    conv = nn.Conv2d(shape.in_channels, shape.out_channels, 3, padding=1).eval()
    x = torch.randn(1, shape.in_channels, shape.size, shape.size)
    wino = WinogradConv2d(  # no fallback to F.conv2d: always measure Winograd
        conv,
        tile=tile,
        autocast_tile=autocast_tile,
        workspace_bytes=workspace_mib << 20,
        min_gmacs=0,
        min_side=1,
    )

    def plain() -> torch.Tensor:
        return F.conv2d(x, conv.weight, conv.bias, padding=1)

    def winograd() -> torch.Tensor:
        return wino(x)

    variants = (plain, winograd, _autocast(plain), _autocast(winograd))
    fns = dict(zip(VARIANTS, variants, strict=True))
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        outputs = {k: fn() for k, fn in fns.items()}  # warm-up (workspace, oneDNN primitives)
        ref = outputs["conv fp32"]
        diffs = {k: max_relative_difference(ref, y) for k, y in outputs.items()}
        del outputs
        for _ in range(rounds):
            for k, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - start)
    base = statistics.median(times["conv fp32"])
    return {
        k: {
            "ms": 1000 * statistics.median(t),
            "ratio": statistics.median(t) / base,
            "rel_diff": diffs[k],
        }
        for k, t in times.items()
    }


def format_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """One line per shape: ms, ratio to conv fp32 and relative difference of each variant."""
    head = f"{'shape':<34}" + "".join(f"{v:>30}" for v in VARIANTS)
    sub = f"{'':<34}" + "".join(f"{'ms  ratio  rel diff':>30}" for _ in VARIANTS)
    lines = [head, sub]
    for name, row in results.items():
        s = SHAPES[name]
        label = f"{name} {s.in_channels}->{s.out_channels}@{s.size} ({s.gmacs:.1f} GMAC)"
        cells = "".join(
            f"{row[v]['ms']:>14.1f}{row[v]['ratio']:>7.2f}{row[v]['rel_diff']:>9.1e}"
            for v in VARIANTS
        )
        lines.append(f"{label:<34}{cells}")
    return "\n".join(lines)


@user_errors("python -m vanseg.tools.bench_winograd")
def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    parser = argparse.ArgumentParser(
        prog="python -m vanseg.tools.bench_winograd",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument(
        "--shapes", default=",".join(SHAPES), help=f"comma list of {', '.join(SHAPES)}"
    )
    parser.add_argument("--tile", type=int, default=4, choices=TILE_SIZES)
    parser.add_argument("--autocast-tile", type=int, default=2, choices=TILE_SIZES)
    parser.add_argument("--workspace-mib", type=int, default=128, help="chunk budget (MiB)")
    args = parser.parse_args(argv)
    names = args.shapes.split(",")
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        parser.error(f"--shapes: unknown {unknown}; choose from {', '.join(SHAPES)}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"{torch.get_num_threads()} threads, tile {args.tile} (fp32), {args.autocast_tile} "
        f"(bf16), workspace {args.workspace_mib} MiB, median of {args.rounds} rounds, "
        f"load average {os.getloadavg()[0]:.2f} at start",
        flush=True,
    )
    results = {}
    for name in names:
        results[name] = bench_shape(
            SHAPES[name], args.rounds, args.tile, args.autocast_tile, args.workspace_mib
        )
        print(format_table({name: results[name]}).splitlines()[-1], flush=True)
    print(format_table(results))
    return results


if __name__ == "__main__":
    main()
