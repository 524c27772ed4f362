"""predict.py never replaces its inputs, ground truth or another run's outputs (issue 19.1)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vanseg
from vanseg.config.compose import compose_config, model_config
from vanseg.errors import ConfigError, OutputExistsError
from vanseg.inference.protocol import InferenceProtocol
from vanseg.tasks.predict import run_predict
from vanseg.tasks.predict_outputs import OutputLock

FAST = InferenceProtocol(base_scale=None, mode="slide", crop=32, stride=32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = compose_config(["backbone=van_test", "head=light_ham", "data.num_classes=3",
                          "head.channels=32"])  # fmt: skip
    model_cfg = model_config(cfg)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    vanseg.save_model(vanseg.build_model_from_config(model_cfg), model_cfg, path)
    return path


def dataset(root: Path) -> Path:
    """``root/images/*.jpg`` and ground truth ``root/labels/*.png`` with the same stems."""
    rng = np.random.default_rng(0)
    for folder in ("images", "labels"):
        (root / folder).mkdir(parents=True)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
            root / "images" / f"{name}.jpg"
        )
        Image.fromarray(rng.integers(0, 3, (40, 48), dtype=np.uint8)).save(
            root / "labels" / f"{name}.png"
        )
    return root


def checksums(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def predict(checkpoint: Path, input: Path, output: Path, **kw):
    return run_predict(checkpoint, input, output, protocol=FAST, progress=False, **kw)


def test_ground_truth_next_to_the_images_is_never_replaced(checkpoint, tmp_path) -> None:
    data = dataset(tmp_path / "data")
    before = checksums(data)
    with pytest.raises(OutputExistsError, match=r"labels/a\.png.*not written by predict\.py"):
        predict(checkpoint, data / "images", data, overwrite=True)
    assert checksums(data) == before


def test_inputs_are_never_outputs(checkpoint, tmp_path) -> None:
    out = tmp_path / "out"
    predict(checkpoint, dataset(tmp_path / "data") / "images", out)
    before = checksums(out)
    with pytest.raises(OutputExistsError, match=r"would write over input images .*labels/a\.png"):
        predict(checkpoint, out / "labels", out, overwrite=True)
    assert checksums(out) == before


def test_overwrite_replaces_only_an_earlier_prediction(checkpoint, tmp_path) -> None:
    images = dataset(tmp_path / "data") / "images"
    out = tmp_path / "out"
    predict(checkpoint, images, out)
    with pytest.raises(OutputExistsError, match=r"a\.png.*already exist; pass overwrite=true"):
        predict(checkpoint, images, out)
    report = predict(checkpoint, images, out, overwrite=True)
    assert sorted(p.name for p in report.written) == ["a.jpg", "b.jpg"]


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_runs(
    checkpoint, tmp_path
) -> None:
    images = dataset(tmp_path / "data") / "images"
    out = tmp_path / "out"
    with OutputLock(out):  # the first run, still writing
        with pytest.raises(ConfigError, match=r"another predict\.py \(process \d+\) is writing"):
            predict(checkpoint, images, out)
    assert not (out / "labels").exists()


def test_the_lock_of_a_killed_run_is_taken_over(checkpoint, tmp_path, caplog) -> None:
    images = dataset(tmp_path / "data") / "images"
    out = tmp_path / "out"
    out.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (out / ".predict.lock").write_text(gone)
    report = predict(checkpoint, images, out)
    assert len(report.written) == 2 and not (out / ".predict.lock").exists()
    assert any("stale lock" in r.getMessage() for r in caplog.records)


def test_output_naming_a_file_is_refused(checkpoint, tmp_path) -> None:
    images = dataset(tmp_path / "data") / "images"
    before = checksums(images)
    with pytest.raises(ConfigError, match=r"output=.*a\.jpg is a file"):
        predict(checkpoint, images / "a.jpg", images / "a.jpg")
    assert checksums(images) == before


def test_a_foreign_lock_named_file_is_never_deleted(checkpoint, tmp_path) -> None:
    images = dataset(tmp_path / "data") / "images"
    out = tmp_path / "out"
    out.mkdir()
    (out / ".predict.lock").write_text("my notes")
    with pytest.raises(ConfigError, match=r"\.predict\.lock exists but is not a predict\.py lock"):
        predict(checkpoint, images, out)
    assert (out / ".predict.lock").read_text() == "my notes"
