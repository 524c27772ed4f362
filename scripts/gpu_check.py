"""The GPU check (``make gpu-check``): run on a machine with one CUDA GPU, under 8 minutes.

1. the tests marked ``gpu`` (tests/training/test_cuda.py): NMF in float32 under bf16/fp16
   autocast, SyncBatchNorm in a one-process DDP run, fused AdamW, channels_last training,
   resume on CUDA;
2. ``vanseg.tools.benchmark --device cuda`` for van_base + light_ham and van_base + upernet
   (fp32, bf16, compiled), batch 1 and 16;
3. 200 training steps of van_base + light_ham at 512x512, batch 2 and 16, fp32 and
   bf16-mixed (fused AdamW, channels_last): s/step, img/s and peak memory.

Everything prints to stdout; ``--json PATH`` also writes the benchmark and training figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str]) -> int:
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


def train_steps(batch: int, precision: str, steps: int, size: int = 512) -> dict:
    """``steps`` training steps of van_base + light_ham (150 classes) on random data."""
    from vanseg.models.build import build_model
    from vanseg.tools.benchmark import TrainingLevers, _train_step

    device = torch.device("cuda")
    model = build_model("van_base", "light_ham").to(device)
    images = torch.randn(batch, 3, size, size, device=device)
    labels = torch.randint(0, model.num_classes, (batch, size, size), device=device)
    levers = TrainingLevers(optimizer="fused", channels_last=True, precision=precision)
    step = _train_step(model, levers, images, labels)
    for _ in range(5):  # warm-up (cuDNN autotuning, allocator)
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return {
        "batch": batch,
        "precision": precision,
        "s_per_step": seconds,
        "img_per_s": batch / seconds,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device is visible; run it on a GPU machine", file=sys.stderr)
        return 2
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    torch.backends.cudnn.benchmark = True
    failed = run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests"])
    python = [sys.executable, "-m", "vanseg.tools.benchmark", "--device", "cuda"]
    for head in ("light_ham", "upernet"):
        for batch in (1, 16):
            failed |= run(
                [*python, "backbone=van_base", f"head={head}", "--precisions", "fp32,bf16",
                 "--compile", "--batch", str(batch), "--rounds", "10", "--markdown"]
            )  # fmt: skip
    rows = []
    print(f"\nvan_base + light_ham, {args.steps} training steps at 512x512, fused AdamW, NHWC:")
    print("| batch | precision | s/step | img/s | peak GiB |\n| ---: | --- | ---: | ---: | ---: |")
    for batch in (2, 16):
        for precision in ("32", "bf16-mixed"):
            row = train_steps(batch, precision, args.steps)
            rows.append(row)
            print(
                f"| {batch} | {precision} | {row['s_per_step']:.3f} | {row['img_per_s']:.1f} | "
                f"{row['peak_mem_gib']:.1f} |",
                flush=True,
            )
            torch.cuda.empty_cache()
    if args.json:
        Path(args.json).write_text(json.dumps({"training": rows}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
