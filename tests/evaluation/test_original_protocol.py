"""eval.py and predict.py give the original test pipeline's predictions pixel for pixel (issue 8).

A small ADE-layout set is generated (JPEG images of mixed sizes: landscape, portrait, a
panorama, one that lands on a multiple of 32, odd sizes; PNG labels with raw 0 = unlabelled).
The reference predictions come from the independent re-statement of the mmseg 0.21 test
pipeline (``original_test_pipeline.py``), run with the same weights and the same NMF seed; the
reference confusion matrix uses docs/reference.md §9 (``reduce_zero_label``, 255 dropped).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

import vanseg
from tests.evaluation import original_test_pipeline as original
from vanseg.config.compose import compose_config, model_config
from vanseg.inference.passes import predict_mask, set_eval_seed
from vanseg.inference.protocol import MS_RATIOS
from vanseg.tasks.evaluate import run_eval
from vanseg.tasks.predict import run_predict

K = 5
EVAL_SCALE = (256, 64)
# (h, w) -> keep-ratio size in (256, 64): (48, 64) -> 64x85, (64, 40) -> 102x64,
# (25, 150) -> 43x256 (panorama, long side bound), (64, 64) -> 64x64 (already a multiple of 32).
SIZES = [(48, 64), (64, 40), (25, 150), (64, 64), (33, 47), (70, 53)]
LIGHT_HAM = ["backbone=van_test", "head=light_ham", "head.channels=32"]
HAMNET = [
    "backbone=van_test",
    "head=hamnet",
    "head.channels=32",
    "head.rank=8",
    "aux_head.channels=32",
]


def make_dataset(root: Path) -> Path:
    """Smooth textured JPEGs and labels derived from them (raw 0 = unlabelled, 1..K)."""
    rng = np.random.default_rng(0)
    for split in ("training", "validation"):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
    for i, (h, w) in enumerate(SIZES):
        ys, xs = np.mgrid[0:h, 0:w]
        label = ((ys // 7 + xs // 9 + i) % (K + 1)).astype(np.uint8)
        colours = rng.integers(0, 256, size=(K + 1, 3))
        image = np.clip(colours[label] + rng.integers(-30, 31, (h, w, 3)), 0, 255)
        name = f"img_{i}"
        Image.fromarray(image.astype(np.uint8)).save(root / "images/validation" / f"{name}.jpg")
        Image.fromarray(label).save(root / "annotations/validation" / f"{name}.png")
    # one training pair so that the folder layout is complete
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images/training/t.jpg")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "annotations/training/t.png")
    return root


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ade_like"))


def data_overrides(root: Path) -> list[str]:
    return [
        "data=folder",
        f"data.root={root}",
        f"data.num_classes={K}",
        "data.reduce_zero_label=true",
        f"data.eval_scale=[{EVAL_SCALE[0]},{EVAL_SCALE[1]}]",
    ]


def save_checkpoint(path: Path, model_overrides: list[str], data_root: Path | None) -> Path:
    """A checkpoint with the model config; with ``data_root``, also a train.py run config."""
    overrides = [*model_overrides, f"data.num_classes={K}", "backbone.pretrained=null"]
    torch.manual_seed(0)
    model_cfg = model_config(compose_config(overrides))
    model = vanseg.build_model_from_config(model_cfg)
    if data_root is None:
        vanseg.save_model(model, model_cfg, path)
        return path
    run_cfg = compose_config([*overrides, *data_overrides(data_root)])
    data = OmegaConf.to_container(run_cfg.data, resolve=True)
    vanseg.save_model(model, model_cfg, path, config={"data": data})
    return path


def read_reference_pairs(root: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(BGR image as mmcv reads it, label after reduce_zero_label) per validation image."""
    pairs = []
    for image_path in sorted((root / "images/validation").iterdir()):
        raw = np.array(Image.open(root / "annotations/validation" / f"{image_path.stem}.png"))
        label = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
        label[raw == 255] = 255
        pairs.append((original.imread_bgr(image_path), label))
    return pairs


def reference(model, root: Path, **protocol) -> tuple[list[np.ndarray], np.ndarray]:
    """The re-statement's masks and confusion matrix (rows = label, columns = prediction)."""
    masks, confmat = [], np.zeros((K, K), np.int64)
    for bgr, label in read_reference_pairs(root):
        mask = original.predict(model, bgr, K, img_scale=EVAL_SCALE, **protocol)
        masks.append(mask)
        confmat += original.confusion(mask, label, K)
    return masks, confmat


def agreement(result, model, root: Path, ref_masks: list[np.ndarray]) -> tuple[int, int]:
    """(pixels that differ, pixels evaluated) between eval.py's code path and the reference."""
    differ = evaluated = 0
    for (bgr, label), ref in zip(read_reference_pairs(root), ref_masks, strict=True):
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        ours = predict_mask(model, rgb, result.protocol, out_size=label.shape).numpy()
        keep = label != 255
        differ += int((ours[keep] != ref[keep]).sum())
        evaluated += int(keep.sum())
    return differ, evaluated


PROTOCOLS = {
    # name: (eval.py options, re-statement arguments)
    "whole": ([], {"size_divisor": 32}),
    "ms_flip": (["tta=ms_flip"], {"ratios": MS_RATIOS, "flip": True, "size_divisor": 32}),
    "slide": (
        ["inference.mode=slide", "inference.crop=64", "inference.stride=43"],
        {"size_divisor": 32, "slide_crop_stride": (64, 43)},
    ),
}


@pytest.mark.parametrize(
    "name", ["whole", pytest.param("ms_flip", marks=pytest.mark.slow), "slide"]
)
def test_eval_confusion_equals_the_original_pipeline(name, dataset_root, tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "model.ckpt", LIGHT_HAM, None)
    options, ref_args = PROTOCOLS[name]
    out = tmp_path / "out"
    overrides = [
        f"ckpt_path={ckpt}",
        f"output={out}",
        "progress=false",
        "eval_seed=0",
        *data_overrides(dataset_root),
        *options,
    ]
    result = run_eval(compose_config(overrides, config_name="eval"), overrides)
    model = vanseg.load_model(ckpt)
    set_eval_seed(model, 0)
    ref_masks, ref_confmat = reference(model, dataset_root, **ref_args)
    np.testing.assert_array_equal(np.load(out / "confusion.npy"), ref_confmat)
    differ, evaluated = agreement(result, model, dataset_root, ref_masks)
    with capsys.disabled():
        print(f"\n[{name}] pixels that differ / pixels evaluated: {differ} / {evaluated}")
    assert differ == 0 and evaluated == ref_confmat.sum() > 0


@pytest.mark.slow
def test_hamnet_default_is_six_ratios_without_flip(dataset_root, tmp_path, capsys):
    """HamNet's plain test.py (ade20k_std.py): ratios 0.5..1.75, no flip, no ResizeToMultiple."""
    ckpt = save_checkpoint(tmp_path / "hamnet.ckpt", HAMNET, None)  # converted-style: no data
    out = tmp_path / "out"
    overrides = [f"ckpt_path={ckpt}", f"output={out}", "progress=false", "eval_seed=0"]
    overrides += data_overrides(dataset_root)
    result = run_eval(compose_config(overrides, config_name="eval"), overrides)
    assert result.protocol.scales == MS_RATIOS and not result.protocol.flip
    assert result.protocol.size_divisor is None and result.protocol.base_scale == EVAL_SCALE
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["protocol_text"].startswith("test.py default for hamnet")
    assert saved["family"] == "hamnet" and saved["protocol"]["scales"] == list(MS_RATIOS)
    model = vanseg.load_model(ckpt)
    set_eval_seed(model, 0)
    ref_masks, ref_confmat = reference(model, dataset_root, ratios=MS_RATIOS, size_divisor=None)
    np.testing.assert_array_equal(np.load(out / "confusion.npy"), ref_confmat)
    differ, evaluated = agreement(result, model, dataset_root, ref_masks)
    with capsys.disabled():
        print(f"\n[hamnet default] pixels that differ / pixels evaluated: {differ} / {evaluated}")
    assert differ == 0


def test_predict_gives_the_eval_masks(dataset_root, tmp_path):
    """predict.py takes the protocol of the checkpoint (its stored eval_scale), like eval.py."""
    ckpt = save_checkpoint(tmp_path / "trained.ckpt", LIGHT_HAM, dataset_root)
    out = tmp_path / "pred"
    run_predict(ckpt, dataset_root / "images/validation", out, eval_seed=0, progress=False)
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"]["base_scale"] == list(EVAL_SCALE)  # not ADE's (2048, 512)
    assert report["protocol"]["size_divisor"] == 32
    assert report["class_names"] == [f"class_{i}" for i in range(K)]
    eval_out = tmp_path / "eval"
    overrides = [f"ckpt_path={ckpt}", f"output={eval_out}", "progress=false", "eval_seed=0"]
    run_eval(compose_config(overrides, config_name="eval"), overrides)
    model = vanseg.load_model(ckpt)
    set_eval_seed(model, 0)
    ref_masks, _ = reference(model, dataset_root, size_divisor=32)
    confmat = np.zeros((K, K), np.int64)
    images = sorted((dataset_root / "images/validation").iterdir())
    pairs = read_reference_pairs(dataset_root)
    for path, ref, (_, label) in zip(images, ref_masks, pairs, strict=True):
        mask = np.asarray(Image.open(out / "labels" / f"{path.stem}.png"))
        np.testing.assert_array_equal(mask, ref)
        confmat += original.confusion(mask, label, K)
    np.testing.assert_array_equal(confmat, np.load(eval_out / "confusion.npy"))
