"""predict.py as processes (issue 23): two torchrun ranks, kill -9 and resume, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vanseg
from vanseg.config.compose import compose_config, model_config
from vanseg.tasks.predict_journal import JOURNAL_DIR

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
FAST = ["inference.base_scale=null", "inference.mode=slide", "inference.crop=32",
        "inference.stride=32", "eval_seed=0", "device=cpu"]  # fmt: skip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    overrides = ["backbone=van_test", "head=light_ham", "data.num_classes=4", "head.channels=32"]
    model_cfg = model_config(compose_config(overrides))
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    vanseg.save_model(vanseg.build_model_from_config(model_cfg), model_cfg, path)
    return path


def make_images(folder: Path, count: int, size: tuple[int, int] = (40, 52)) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:03d}.png")
    return folder


def command(checkpoint: Path, images: Path, out: Path, *extra: str) -> list[str]:
    args = [f"ckpt_path={checkpoint}", f"input={images}", f"output={out}", *FAST, *extra]
    return [sys.executable, str(REPO / "predict.py"), *args]


def outputs(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for folder in ("labels", "overlays")
        for p in sorted((out / folder).iterdir())
    }


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)


def test_two_processes_write_what_one_writes(checkpoint: Path, tmp_path: Path):
    images = make_images(tmp_path / "images", 7)
    one = run(command(checkpoint, images, tmp_path / "one", "predict.num_workers=1"), tmp_path)
    assert one.returncode == 0, one.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2"]  # fmt: skip
    cmd = command(checkpoint, images, tmp_path / "two", "predict.num_workers=1")
    two = run([*torchrun, *cmd[1:]], tmp_path)
    assert two.returncode == 0, two.stdout + two.stderr
    assert outputs(tmp_path / "two") == outputs(tmp_path / "one")  # same files, same bytes
    report = json.loads((tmp_path / "two" / "report.json").read_text())
    assert report["processes"] == 2 and report["counts"] == {"done": 7, "skipped": 0, "failed": 0}
    assert sorted(Path(p).name for p in report["written"]) == sorted(os.listdir(images))
    assert not (tmp_path / "two" / ".predict.lock").exists()
    assert not (tmp_path / "two" / JOURNAL_DIR).exists()


def _stop_midway(cmd: list[str], cwd: Path, out: Path, sig: int) -> int:
    """Start ``cmd``, send ``sig`` once a few images are journalled done; its exit status."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    journal = out / JOURNAL_DIR / "rank0.txt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.is_file() and journal.read_text().count("done ") >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be stopped: " + proc.stderr.read()
    proc.send_signal(sig)
    proc.wait(timeout=120)
    return proc.returncode


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_stopped_run_resumes_to_the_uninterrupted_outputs(checkpoint: Path, tmp_path: Path, sig):
    count = 24
    images = make_images(tmp_path / "images", count, size=(96, 128))
    whole = run(command(checkpoint, images, tmp_path / "whole"), tmp_path)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "out"
    cmd = command(checkpoint, images, out, "predict.num_workers=1", "progress=false")
    status = _stop_midway(cmd, tmp_path, out, sig)
    if sig == signal.SIGTERM:  # the images in flight are finished, the lock removed
        assert status == 130 and not (out / ".predict.lock").exists()
    else:
        assert status == -signal.SIGKILL and (out / ".predict.lock").exists()
    finished = (out / JOURNAL_DIR / "rank0.txt").read_text().count("done ")
    assert 3 <= finished < count and not (out / "report.json").exists()
    again = run(command(checkpoint, images, out, "resume=true", "predict.num_workers=1"), tmp_path)
    assert again.returncode == 0, again.stderr
    assert outputs(out) == outputs(tmp_path / "whole")
    counts = json.loads((out / "report.json").read_text())["counts"]
    assert counts["done"] + counts["skipped"] == count and counts["failed"] == 0
    assert counts["skipped"] == finished  # every image journalled done is kept, no other
