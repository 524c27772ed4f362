"""vanseg.Segmenter: each input kind, the checkpoint's protocol, predict.py's masks, pictures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import vanseg
from vanseg.checkpoint.metadata import ModelMeta
from vanseg.config.compose import compose_config, model_config
from vanseg.data.classes import generic_palette
from vanseg.errors import ConfigError, DatasetError, InputNotFoundError, OutputExistsError
from vanseg.inference.passes import predict_mask, predict_probs
from vanseg.inference.passes import set_eval_seed as seed_nmf
from vanseg.inference.protocol import InferenceProtocol
from vanseg.tasks.predict import run_predict

K = 5
REPO = Path(__file__).resolve().parents[1]
# Keep the image size, then the checkpoint's ResizeToMultiple(32); 32x32 windows only, so the
# network sees one input shape (fast on CPU). The default keep-ratio resize is checked below
# through the protocol's fields.
SMALL = {"base_scale": None, "mode": "slide", "crop": 32, "stride": 32}
PROTOCOL = InferenceProtocol(base_scale=None, size_divisor=32, mode="slide", crop=32, stride=32)
#: ImageNet mean/std of the original configs (0..255 units), docs/reference.md.
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


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


@pytest.fixture(scope="module")
def image_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pixels = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("images") / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def segmenter(checkpoint: Path) -> vanseg.Segmenter:
    return vanseg.Segmenter.from_checkpoint(checkpoint, inference=SMALL, eval_seed=0, device="cpu")


def _expected_mask(checkpoint: Path, rgb: np.ndarray) -> np.ndarray:
    """The mask from the inference functions directly, with a hand-built protocol."""
    model = vanseg.load_model(checkpoint)
    seed_nmf(model, 0)
    return predict_mask(model, rgb, PROTOCOL).numpy()


def test_default_protocol_is_the_family_test_pipeline(checkpoint: Path) -> None:
    seg = vanseg.Segmenter.from_checkpoint(checkpoint, device="cpu")
    protocol = seg.protocol
    # Light-Ham: the ade20k.py test pipeline, keep-ratio into (2048, 512), ResizeToMultiple(32).
    assert protocol.base_scale == (2048, 512) and protocol.size_divisor == 32
    assert protocol.scales == (1.0,) and protocol.flip is False and protocol.mode == "whole"
    assert protocol.mean == MEAN and protocol.std == STD
    aug = vanseg.Segmenter.from_checkpoint(checkpoint, tta="ms_flip", device="cpu").protocol
    assert aug.scales == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75) and aug.flip is True
    assert seg.classes == tuple(f"class_{i}" for i in range(K))
    np.testing.assert_array_equal(seg.palette, np.asarray(generic_palette(K), np.uint8))


def test_each_input_kind_gives_the_same_mask(
    segmenter: vanseg.Segmenter, checkpoint: Path, image_file: Path
) -> None:
    rgb = np.asarray(Image.open(image_file).convert("RGB"))
    expected = _expected_mask(checkpoint, rgb)
    with Image.open(image_file) as pil:
        inputs = [image_file, str(image_file), pil, rgb]
        results = [segmenter(x) for x in inputs]
        batch = segmenter(inputs)
    assert isinstance(batch, list) and len(batch) == len(inputs)
    for res in [*results, *batch]:
        assert res.mask.shape == (50, 70) and res.probs is None
        np.testing.assert_array_equal(res.mask, expected)
    assert results[0].source == image_file and results[3].source is None


def test_grey_and_palette_images_are_converted_like_the_loader(
    segmenter: vanseg.Segmenter, checkpoint: Path
) -> None:
    grey = Image.fromarray(np.arange(40 * 60, dtype=np.uint32).reshape(40, 60).astype(np.uint8))
    rgb = np.repeat(np.asarray(grey)[:, :, None], 3, axis=2)  # L -> RGB copies the channel
    np.testing.assert_array_equal(segmenter(grey).mask, _expected_mask(checkpoint, rgb))


def test_probs_on_request(segmenter: vanseg.Segmenter, checkpoint: Path, image_file: Path):
    res = segmenter(image_file, probs=True)
    assert res.probs.shape == (K, 50, 70) and res.probs.dtype == np.float32
    np.testing.assert_allclose(res.probs.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(res.probs.argmax(axis=0), res.mask)
    model = vanseg.load_model(checkpoint)
    seed_nmf(model, 0)
    rgb = np.asarray(Image.open(image_file).convert("RGB"))
    np.testing.assert_array_equal(res.probs, predict_probs(model, rgb, PROTOCOL)[0].numpy())


def test_same_masks_as_run_predict(
    segmenter: vanseg.Segmenter, checkpoint: Path, image_file: Path, tmp_path: Path
) -> None:
    # predict.yaml's inference node may also hold precision/fast (vanseg.optimize).
    options = {**SMALL, "precision": "fp32", "fast": False}
    run_predict(checkpoint, image_file, tmp_path, inference=options, eval_seed=0, progress=False)
    label = np.asarray(Image.open(tmp_path / "labels" / "photo.png"))
    np.testing.assert_array_equal(label, segmenter(image_file).mask)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["precision"] == "fp32" and report["protocol"]["crop"] == 32


@pytest.mark.slow
def test_same_masks_as_predict_py(
    segmenter: vanseg.Segmenter, checkpoint: Path, image_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = [f"inference.{k}={'null' if v is None else v}" for k, v in SMALL.items()]
    cmd = [sys.executable, "predict.py", f"ckpt_path={checkpoint}", f"input={image_file}"]
    cmd += [f"output={out}", "eval_seed=0", "device=cpu", "progress=false", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    label = np.asarray(Image.open(out / "labels" / "photo.png"))
    np.testing.assert_array_equal(label, segmenter(image_file).mask)


def test_overlay_blends_and_names_the_classes_present(segmenter: vanseg.Segmenter) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    res = segmenter(rgb)
    plain = np.asarray(res.overlay(opacity=0.25, legend=False)).astype(int)
    colours = np.asarray(generic_palette(K), int)[res.mask]
    by_hand = np.rint(0.75 * rgb.astype(float) + 0.25 * colours).astype(int)
    assert np.abs(plain - by_hand).max() <= 1  # float32 rounding at .5 may differ by one
    shown = np.asarray(res.overlay(opacity=0.25))
    assert shown.shape[1] > 64 and shown.shape[0] >= 40
    np.testing.assert_array_equal(shown[:40, :64], plain)
    panel = shown[:, 64:].reshape(-1, 3)
    present = set(np.unique(res.mask).tolist())
    assert set(res.classes_present) == {f"class_{c}" for c in present}
    for cls, colour in enumerate(generic_palette(K)):
        found = bool((panel == np.asarray(colour, np.uint8)).all(axis=1).any())
        assert found == (cls in present), (cls, colour, present)


def test_save_writes_label_and_overlay_and_refuses_overwrite(
    segmenter: vanseg.Segmenter, image_file: Path, tmp_path: Path
) -> None:
    res = segmenter(image_file)
    label, overlay = res.save(tmp_path)
    assert label == tmp_path / "labels" / "photo.png" and overlay.suffix == ".jpg"
    with Image.open(label) as img:
        assert img.mode == "P"
        np.testing.assert_array_equal(np.asarray(img), res.mask)
    assert Image.open(overlay).size[1] >= 50
    with pytest.raises(OutputExistsError, match="already exist; pass overwrite=True"):
        res.save(tmp_path)
    res.save(tmp_path, overwrite=True)
    with pytest.raises(ConfigError, match="name="):
        segmenter(np.asarray(Image.open(image_file).convert("RGB"))).save(tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["labels", "overlays", "photo.png", "photo.jpg"]
    ), "no temporary files are left behind"


def test_bad_inputs_are_named(segmenter: vanseg.Segmenter, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"uint8 of shape \(H, W, 3\), got float32"):
        segmenter(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ConfigError, match=r"got uint8 \(8, 8\)"):
        segmenter(np.zeros((8, 8), np.uint8))
    with pytest.raises(InputNotFoundError, match="nothing.png does not exist"):
        segmenter(tmp_path / "nothing.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="cannot read image .*broken.jpg"):
        segmenter(tmp_path / "broken.jpg")
    with pytest.raises(ConfigError, match="cannot segment a int"):
        segmenter(3)


def test_empty_images_are_named(segmenter: vanseg.Segmenter) -> None:
    with pytest.raises(ConfigError, match=r"no pixels \(array of shape \(0, 0, 3\)\)"):
        segmenter(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(ConfigError, match=r"no pixels \(PIL image of shape \(0, 5, 3\)\)"):
        segmenter(Image.new("RGB", (5, 0)))


def test_float_pil_image_is_named(segmenter: vanseg.Segmenter) -> None:
    image = Image.fromarray(np.full((6, 8), 0.5, np.float32))
    assert image.mode == "F"
    with pytest.raises(ConfigError, match="PIL image of mode F: .*convert it first"):
        segmenter(image)


def test_one_row_panorama_is_segmented() -> None:
    """A 1 x 5000 RGB image: red on the left half, blue on the right."""
    colour_model = nn.Conv2d(3, 2, 1)  # class 0 follows the red channel, class 1 the blue one
    with torch.no_grad():
        colour_model.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 0, 1]]).view(2, 3, 1, 1))
        colour_model.bias.zero_()
    meta = ModelMeta({}, 2, class_names=("red", "blue"), palette=((255, 0, 0), (0, 0, 255)))
    seg = vanseg.Segmenter(colour_model, meta, protocol=InferenceProtocol(size_divisor=32))
    pixels = np.zeros((1, 5000, 3), np.uint8)
    pixels[:, :2500, 0] = 255
    pixels[:, 2500:, 2] = 255
    for image, expected in ((pixels, (1, 5000)), (pixels.transpose(1, 0, 2), (5000, 1))):
        mask = seg(np.ascontiguousarray(image)).mask
        assert mask.shape == expected
        # Resizing blurs the border by a few pixels of the 2048-pixel network input.
        assert (mask.reshape(-1)[:2490] == 0).all() and (mask.reshape(-1)[2510:] == 1).all()


def test_build_gives_ade_metadata() -> None:
    seg = vanseg.Segmenter.build("van_test", "light_ham", device="cpu")
    # ADE20K (SceneParse150): class 0 is "wall" (120, 120, 120), class 2 "sky" (6, 230, 230).
    assert len(seg.classes) == 150 and seg.classes[0] == "wall" and seg.classes[2] == "sky"
    assert seg.palette[0].tolist() == [120, 120, 120] and seg.palette[2].tolist() == [6, 230, 230]


def test_precision_and_fast_use_vanseg_optimize(
    segmenter: vanseg.Segmenter, checkpoint: Path, image_file: Path
) -> None:
    reference = segmenter(image_file, probs=True).probs
    fast = vanseg.Segmenter.from_checkpoint(
        checkpoint, inference=SMALL, eval_seed=0, fast=True, device="cpu"
    )
    # The folded fp32 model: probabilities within float rounding of the plain model.
    np.testing.assert_allclose(fast(image_file, probs=True).probs, reference, atol=1e-4)
    bf16 = vanseg.Segmenter.from_checkpoint(
        checkpoint, inference=SMALL, eval_seed=0, precision="bf16", device="cpu"
    )
    assert np.abs(bf16(image_file, probs=True).probs - reference).max() < 0.1
    with pytest.raises(vanseg.errors.VansegError, match="precision"):
        vanseg.Segmenter.from_checkpoint(checkpoint, precision="fp8", device="cpu")


def test_precision_is_given_once(checkpoint: Path) -> None:
    """precision/fast come as arguments or as inference options; two different values are an
    error (the inference dict used to win silently), the same value twice is fine."""
    with pytest.raises(ConfigError, match=r"precision is given twice.*bf16.*fp32"):
        vanseg.Segmenter.from_checkpoint(
            checkpoint, inference={**SMALL, "precision": "fp32"}, precision="bf16", device="cpu"
        )
    with pytest.raises(ConfigError, match="fast is given twice"):
        vanseg.Segmenter.from_checkpoint(
            checkpoint, inference={**SMALL, "fast": False}, fast=True, device="cpu"
        )
    same = vanseg.Segmenter.from_checkpoint(
        checkpoint, inference={**SMALL, "precision": "fp32"}, precision="fp32", device="cpu"
    )
    assert same.precision == "fp32" and same.runner.forward is same.model
