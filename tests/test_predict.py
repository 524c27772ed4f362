"""predict.py: label PNGs, overlays, report, and the refusals on bad input (issue 5, item 6)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import predict as predict_cli
import vanseg
from vanseg.config.compose import compose_config, model_config
from vanseg.data.classes import ADE20K_PALETTE, generic_palette
from vanseg.errors import ConfigError, DatasetError, InputNotFoundError, OutputExistsError
from vanseg.inference.passes import predict_mask, set_eval_seed
from vanseg.inference.protocol import InferenceProtocol
from vanseg.inference.visualize import blend, palette_array
from vanseg.tasks.predict import find_images, run_predict

K = 5
REPO = Path(__file__).resolve().parents[1]
# No resize, and 32x32 windows only: the network sees one input shape, which keeps the tests
# fast on CPU (oneDNN prepares its kernels per shape). The default resize is tested elsewhere.
FAST = InferenceProtocol(base_scale=None, mode="slide", crop=32, stride=32)
SIZES = {"a.jpg": (64, 48), "b.png": (47, 65), "c.JPEG": (33, 70)}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = compose_config(
        ["backbone=van_test", "head=light_ham", f"data.num_classes={K}", "head.channels=32"]
    )
    model_cfg = model_config(cfg)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    vanseg.save_model(vanseg.build_model_from_config(model_cfg), model_cfg, path)
    return path


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in SIZES.items():
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_writes_labels_overlays_and_report(checkpoint: Path, images: Path, tmp_path: Path):
    out = tmp_path / "out"
    report = run_predict(checkpoint, images, out, protocol=FAST, eval_seed=0, progress=False)
    assert sorted(p.name for p in report.written) == sorted(SIZES)
    model = vanseg.load_model(checkpoint)
    set_eval_seed(model, 0)
    for name, (h, w) in SIZES.items():
        stem = Path(name).stem
        label = Image.open(out / "labels" / f"{stem}.png")
        assert label.mode == "P" and label.size == (w, h)
        assert label.getpalette()[: 3 * K] == [c for rgb in generic_palette(K) for c in rgb]
        pixels = np.asarray(Image.open(images / name).convert("RGB"))
        expected = predict_mask(model, pixels, FAST).numpy()
        np.testing.assert_array_equal(np.asarray(label), expected)
        # The overlay at the top left (its pixels: test_segmenter), the legend to its right.
        overlay = Image.open(out / "overlays" / f"{stem}.jpg")
        legend_rows = len(np.unique(expected))
        assert overlay.height == max(h, 16 * legend_rows + 12) and overlay.width > w
    saved = json.loads((out / "report.json").read_text())
    assert saved["num_classes"] == K and saved["protocol"]["crop"] == 32
    assert saved["ignored_not_images"] == [str(images / "notes.txt")]
    assert saved["skipped"] == []


def test_unreadable_file_stops_or_is_reported(checkpoint: Path, images: Path, tmp_path: Path):
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"broken\.jpg.*skip_unreadable=true"):
        run_predict(checkpoint, images, tmp_path / "out1", protocol=FAST, progress=False)
    report = run_predict(
        checkpoint, images, tmp_path / "out2", protocol=FAST, skip_unreadable=True, progress=False
    )
    assert len(report.written) == len(SIZES)
    assert [p.name for p, _ in report.skipped] == ["broken.jpg"]
    saved = json.loads((tmp_path / "out2" / "report.json").read_text())
    assert saved["skipped"][0]["file"].endswith("broken.jpg")


def test_existing_results_need_overwrite(checkpoint: Path, images: Path, tmp_path: Path):
    out = tmp_path / "out"
    run_predict(checkpoint, images / "a.jpg", out, protocol=FAST, progress=False)
    with pytest.raises(OutputExistsError, match="a.png.*already exist; pass overwrite=true"):
        run_predict(checkpoint, images / "a.jpg", out, protocol=FAST, progress=False)
    report = run_predict(
        checkpoint, images / "a.jpg", out, protocol=FAST, overwrite=True, progress=False
    )
    assert len(report.written) == 1


def test_bad_inputs(checkpoint: Path, images: Path, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="holds no images"):
        find_images(empty)
    (empty / "readme.md").write_text("x")
    with pytest.raises(ConfigError, match="only .*readme.md"):
        find_images(empty)
    with pytest.raises(ConfigError, match="does not exist"):
        find_images(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="holds no images"):
        find_images(str(tmp_path / "*.jpg"))
    with pytest.raises(InputNotFoundError, match="checkpoint not found: ckpt_path="):
        run_predict(
            tmp_path / "missing.ckpt", images, tmp_path / "out", protocol=FAST, progress=False
        )
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "a.png")
    with pytest.raises(ConfigError, match="share a file name"):
        run_predict(checkpoint, images, tmp_path / "out", protocol=FAST, progress=False)


def test_glob_input(images: Path):
    found, ignored = find_images(str(images / "*.[jJ]*"))
    assert [p.name for p in found] == ["a.jpg", "c.JPEG"] and ignored == []


def test_palette_and_blend():
    np.testing.assert_array_equal(palette_array(150, "ade20k"), np.asarray(ADE20K_PALETTE))
    assert palette_array(K, None).shape == (K, 3)
    with pytest.raises(ValueError, match="150"):  # ADE20K colours for a 5-class model
        palette_array(K, "ade20k")
    image = np.full((2, 3, 3), 100, np.uint8)
    mask = np.array([[0, 1, 2], [2, 1, 0]])
    colours = palette_array(3, [[0, 0, 0], [255, 255, 255], [10, 20, 30]])
    np.testing.assert_array_equal(blend(image, mask, colours, 0.0), image)
    np.testing.assert_array_equal(blend(image, mask, colours, 1.0), colours[mask])
    assert blend(image, mask, colours, 0.5)[0, 1].tolist() == [178, 178, 178]  # 177.5 rounds up


def test_cli_config_in_process(checkpoint: Path, images: Path, tmp_path: Path, capsys, monkeypatch):
    """The predict.py entry point on a composed config (same code path as the command line)."""
    monkeypatch.delenv("VANSEG_DEBUG", raising=False)
    out = tmp_path / "out"
    overrides = [
        f"ckpt_path={checkpoint}",
        f"input={images}",
        f"output={out}",
        "inference.base_scale=null",
        "inference.mode=slide",
        "inference.crop=32",
        "inference.stride=32",
        "progress=false",
        "opacity=0.3",
    ]
    predict_cli.main.__wrapped__(compose_config(overrides, config_name="predict"))
    assert json.loads((out / "report.json").read_text())["protocol"]["mode"] == "slide"
    capsys.readouterr()
    for args, words in (
        (overrides, "already exist; pass overwrite=true"),
        (overrides[:2], "missing output=..."),
    ):
        with pytest.raises(SystemExit) as exit_info:
            predict_cli.main.__wrapped__(compose_config(args, config_name="predict"))
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("predict.py: error: ") and words in err


def test_cli_refuses_the_input_image_as_output(
    checkpoint: Path, images: Path, tmp_path: Path, capsys, monkeypatch
):
    monkeypatch.delenv("VANSEG_DEBUG", raising=False)
    photo = images / "a.jpg"
    before = hashlib.sha256(photo.read_bytes()).hexdigest()
    for output, words in (
        (photo, f"output={photo} is a file, the input image itself;"),
        (photo / "out", f"output={photo / 'out'} lies under {photo}, a file (the input image);"),
    ):
        overrides = [f"ckpt_path={checkpoint}", f"input={photo}", f"output={output}"]
        with pytest.raises(SystemExit) as exit_info:
            predict_cli.main.__wrapped__(compose_config(overrides, config_name="predict"))
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("predict.py: error: ") and len(err.strip().splitlines()) == 1
        assert words in err and f"output={images / 'predictions'}" in err
    assert hashlib.sha256(photo.read_bytes()).hexdigest() == before
    notes = images / "notes.txt"  # another file, not an input
    with pytest.raises(ConfigError) as refused:
        run_predict(checkpoint, photo, notes, protocol=FAST, progress=False)
    assert str(refused.value).startswith(f"output={notes} is a file; give a folder")
    assert notes.read_text() == "not an image"


@pytest.mark.slow
def test_cli_subprocess_with_tta(checkpoint: Path, images: Path, tmp_path: Path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        str(REPO / "predict.py"),
        f"ckpt_path={checkpoint}",
        f"input={images / 'b.png'}",
        f"output={out}",
        "tta=ms_flip",
        "inference.base_scale=[64,16]",
        "eval_seed=0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "softmax averaged over 12 passes" in done.stdout + done.stderr
    assert (out / "labels" / "b.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "out"]  # no Hydra litter
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "overwrite=true" in again.stderr
