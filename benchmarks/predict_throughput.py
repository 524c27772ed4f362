"""Images per second of predict.py: the plain loop against the pipeline (issue 23).

    python benchmarks/predict_throughput.py [--num-images 400] [--device cpu|cuda] [--threads 1]
        [--rounds 3]

On a generated dataset (`vanseg.data.synthetic`, JPEGs of 128-320 px a side) and a fresh
van_tiny + Light-Ham model (random weights, ``eval_seed=0``, keep-ratio into 256x128, label
PNGs and overlays written), it times

* ``serial``: the loop predict.py ran before the pipeline, ``Segmenter.segment`` then
  ``result.save`` image after image, in this process;
* ``pipeline, 0 workers`` / ``2 workers``: `vanseg.tasks.predict.run_predict` in this process,
  images read by this process or by 2 DataLoader workers, outputs written by 2 threads
  (after one warm-up loop, these three rows run ``--rounds`` times, interleaved; medians);
* ``1 process`` / ``2 processes``: ``predict.py`` as a command (0 reader workers), alone and
  under ``torchrun --nproc_per_node 2``, each process with ``--threads`` threads; their seconds
  are those of the slowest process's loop (from its last progress line), the start-up
  (imports, checkpoint) is shown apart.

It checks that every run wrote the same label PNGs as the serial loop and prints a Markdown
table. Not a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import vanseg
from vanseg.config.compose import compose_config, model_config
from vanseg.data.synthetic import SyntheticSpec, ensure_synthetic_dataset
from vanseg.tasks.predict import run_predict

REPO = Path(__file__).resolve().parents[1]
BASE_SCALE = (256, 128)
SERIAL = "serial loop (before the pipeline)"


def _cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def _checkpoint(folder: Path) -> Path:
    overrides = ["backbone=van_tiny", "backbone.pretrained=false", "head=light_ham",
                 "data.num_classes=8"]  # fmt: skip
    model_cfg = model_config(compose_config(overrides))
    torch.manual_seed(0)
    path = folder / "van_tiny_light_ham.ckpt"
    vanseg.save_model(vanseg.build_model_from_config(model_cfg), model_cfg, path)
    return path


def _images(folder: Path, count: int) -> Path:
    spec = SyntheticSpec(num_train=1, num_val=count, min_side=128, max_side=320)
    source = ensure_synthetic_dataset(spec, folder / "cache") / "images" / "validation"
    return source


def _labels(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "labels").glob("*.png"))}


def _serial(ckpt: Path, images: Path, out: Path, device: str) -> float:
    segmenter = vanseg.Segmenter.from_checkpoint(
        ckpt, inference={"base_scale": list(BASE_SCALE)}, eval_seed=0, device=device
    )
    start = time.perf_counter()
    for path in sorted(images.iterdir()):
        segmenter.segment(path).save(out, path.stem)
    return time.perf_counter() - start


def _pipeline(ckpt: Path, images: Path, out: Path, device: str, workers: int) -> float:
    start = time.perf_counter()
    run_predict(
        ckpt, images, out, inference={"base_scale": list(BASE_SCALE)}, eval_seed=0,
        device=device, progress=False, predict={"num_workers": workers, "writers": 2},
    )  # fmt: skip
    return time.perf_counter() - start


LOOP_LINE = re.compile(r"predict: (\d+)/(\d+) images(?: \(rank (\d+) of \d+\))?, ([\d.]+) img/s")


def _command(
    ckpt: Path, images: Path, out: Path, device: str, processes: int, threads: int
) -> tuple[float, float]:
    """``(seconds of the slowest process's loop, wall seconds with start-up)``."""
    args = [f"ckpt_path={ckpt}", f"input={images}", f"output={out}", "eval_seed=0",
            f"inference.base_scale=[{BASE_SCALE[0]},{BASE_SCALE[1]}]", f"device={device}",
            "progress=true"]  # fmt: skip
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run([*launcher, str(REPO / "predict.py"), *args], env=env, check=True,
                          capture_output=True, text=True, cwd=out.parent)  # fmt: skip
    wall = time.perf_counter() - start
    loops = [
        int(m.group(1)) / float(m.group(4))
        for m in LOOP_LINE.finditer(done.stdout + done.stderr)
        if m.group(1) == m.group(2)  # the last line of each process
    ]
    return max(loops), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=400)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (in process)")
    parser.add_argument(
        "--processes", type=int, default=2, help="torchrun processes (CUDA: at most the GPUs)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the in-process rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="vanseg-predict-bench-"))
    try:
        ckpt = _checkpoint(work)
        images = _images(work, args.num_images)
        _serial(ckpt, images, work / "warm-up", args.device)  # oneDNN prepares its kernels
        # In-process rows: interleaved rounds (load changes hit all alike), median seconds.
        timed: dict[str, list[float]] = {}
        for round_ in range(args.rounds):
            out = work / f"serial{round_}"
            timed.setdefault(SERIAL, []).append(_serial(ckpt, images, out, args.device))
            for workers in (0, 2):
                out = work / f"pipeline{workers}-{round_}"
                seconds = _pipeline(ckpt, images, out, args.device, workers)
                timed.setdefault(f"pipeline, {workers} reader workers", []).append(seconds)
        folders = [work / "serial0", work / "pipeline0-0", work / "pipeline2-0"]
        rows = [
            (f"{what} (median of {args.rounds})", statistics.median(seconds), folder)
            for (what, seconds), folder in zip(timed.items(), folders, strict=True)
        ]
        for processes in (1, args.processes):
            out = work / f"processes{processes}"
            seconds, wall = _command(ckpt, images, out, args.device, processes, args.threads)
            what = f"predict.py, {processes} process{'es' if processes > 1 else ''}"
            rows.append((f"{what} (wall with start-up: {wall:.0f} s)", seconds, out))
        reference = _labels(rows[0][2])
        device = _cpu_name() if args.device == "cpu" else torch.cuda.get_device_name()
        print(
            f"{args.num_images} images, van_tiny + Light-Ham, keep-ratio into "
            f"{BASE_SCALE[0]}x{BASE_SCALE[1]}, {device}, {args.threads} torch thread(s) in process"
        )
        print()
        print("| run | seconds | images/s | vs serial | same labels |")
        print("| --- | ---: | ---: | ---: | --- |")
        for what, seconds, out in rows:
            same = "yes" if _labels(out) == reference else "NO"
            rate = args.num_images / seconds
            ratio = rows[0][1] / seconds
            print(f"| {what} | {seconds:.1f} | {rate:.2f} | {ratio:.2f}x | {same} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
