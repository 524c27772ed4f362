"""predict.py's pipeline (issue 23): reader processes, batches, writers, outputs, resume.

The reference for every mask is today's `vanseg.Segmenter` called image by image (the loop
predict.py ran before the pipeline), read back from the label PNGs that predict.py writes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vanseg
from vanseg.checkpoint.metadata import MS_RATIOS
from vanseg.config.compose import compose_config, model_config
from vanseg.errors import ConfigError, OutputExistsError
from vanseg.inference.protocol import InferenceProtocol
from vanseg.tasks.predict import run_predict
from vanseg.tasks.predict_journal import JOURNAL_DIR

K = 4
SIZES = {"a.png": (40, 56), "b.jpg": (48, 33), "c.png": (40, 56), "d.png": (29, 61)}
SMALL = (64, 32)  # keep-ratio bounds: tiny inputs, so the tests stay fast
PROTOCOLS = {
    "whole": InferenceProtocol(base_scale=SMALL, size_divisor=32),
    "slide": InferenceProtocol(base_scale=None, mode="slide", crop=32, stride=21),
    "ms_flip": InferenceProtocol.ms_flip(base_scale=SMALL, size_divisor=32),
    "hamnet_default": InferenceProtocol(scales=MS_RATIOS, base_scale=SMALL),
}
FAST = PROTOCOLS["slide"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _checkpoint(root: Path, head: str) -> Path:
    overrides = [f"head={head}", "backbone=van_test", f"data.num_classes={K}"]
    overrides += ["head.channels=32"] if head == "light_ham" else []
    model_cfg = model_config(compose_config(overrides))
    torch.manual_seed(0)
    path = root / f"{head}.ckpt"
    vanseg.save_model(vanseg.build_model_from_config(model_cfg), model_cfg, path)
    return path


@pytest.fixture(scope="module")
def ham(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ham"), "light_ham")


@pytest.fixture(scope="module")
def fpn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("fpn"), "fpn")


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, (h, w) in SIZES.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / name)
    return folder


def labels(output: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.asarray(Image.open(p)) for p in sorted((output / "labels").glob("*.png"))}


def files(output: Path) -> dict[str, bytes]:
    kinds = ("labels", "overlays", "probs")
    return {
        str(p.relative_to(output)): p.read_bytes()
        for kind in kinds
        for p in sorted((output / kind).glob("*"))
    }


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_masks_with_workers_equal_the_segmenter(ham: Path, images: Path, tmp_path: Path, name):
    protocol = PROTOCOLS[name]
    out = tmp_path / "out"
    options = {"num_workers": 2, "outputs": "labels"}
    run_predict(ham, images, out, protocol=protocol, eval_seed=0, progress=False, predict=options)
    segmenter = vanseg.Segmenter.from_checkpoint(ham, protocol=protocol, eval_seed=0, device="cpu")
    got = labels(out)
    assert sorted(got) == sorted(Path(n).stem for n in SIZES)
    for image in sorted(images.iterdir()):
        np.testing.assert_array_equal(got[image.stem], segmenter(image).mask)


def test_fresh_random_bases_draw_as_the_plain_loop(ham: Path, images: Path, tmp_path: Path):
    """eval_seed=null: the DataLoader leaves the global random state to the model."""
    torch.manual_seed(7)
    out = tmp_path / "out"
    run_predict(ham, images, out, protocol=FAST, progress=False, predict={"num_workers": 2})
    torch.manual_seed(7)
    segmenter = vanseg.Segmenter.from_checkpoint(ham, protocol=FAST, device="cpu")
    expected = {p.stem: segmenter(p).mask for p in sorted(images.iterdir())}
    got = labels(out)
    for stem, mask in expected.items():
        np.testing.assert_array_equal(got[stem], mask)


def test_batches_equal_batch_one(fpn: Path, ham: Path, images: Path, tmp_path: Path, caplog):
    paths = sorted(images.iterdir())
    protocol = PROTOCOLS["ms_flip"]  # flipped twins and equal sizes batch together
    seg = vanseg.Segmenter.from_checkpoint(fpn, protocol=protocol, device="cpu")
    one = seg(paths, probs=True)
    three = seg(paths, probs=True, batch_size=3)
    for a, b in zip(one, three, strict=True):
        np.testing.assert_allclose(a.probs, b.probs, rtol=0, atol=1e-5)  # float rounding only
        np.testing.assert_array_equal(a.mask, b.mask)
    out = tmp_path / "fpn"
    run_predict(fpn, images, out, protocol=protocol, progress=False, predict={"batch_size": 3})
    for image, result in zip(paths, one, strict=True):
        np.testing.assert_array_equal(labels(out)[image.stem], result.mask)
    # Ham heads: a batch would draw other NMF bases, so they run at batch 1, bit for bit.
    seg = vanseg.Segmenter.from_checkpoint(ham, protocol=protocol, eval_seed=0, device="cpu")
    with caplog.at_level(logging.WARNING, logger="vanseg"):
        batched = seg(paths, batch_size=3)
    assert "batch_size=3 ignored" in caplog.text
    for image, result in zip(paths, batched, strict=True):
        np.testing.assert_array_equal(result.mask, seg(image).mask)


def test_probs_output(ham: Path, images: Path, tmp_path: Path):
    out = tmp_path / "out"
    run_predict(ham, images, out, protocol=FAST, eval_seed=0, progress=False,
                predict={"outputs": "probs", "num_workers": 1})  # fmt: skip
    assert not (out / "labels").exists() and not (out / "overlays").exists()
    seg = vanseg.Segmenter.from_checkpoint(ham, protocol=FAST, eval_seed=0, device="cpu")
    for image in sorted(images.iterdir()):
        with np.load(out / "probs" / f"{image.stem}.npz") as stored:
            probs = stored["probs"]
        expected = seg(image, probs=True).probs
        assert probs.dtype == np.float16 and probs.shape == expected.shape
        np.testing.assert_allclose(probs, expected, atol=1e-3)
    saved = json.loads((out / "report.json").read_text())
    assert saved["outputs"] == "probs" and saved["counts"]["done"] == len(SIZES)


def test_resume_redoes_missing_and_truncated_outputs(ham: Path, images: Path, tmp_path: Path):
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    run_predict(ham, images, fresh, protocol=FAST, eval_seed=0, progress=False)
    run_predict(ham, images, out, protocol=FAST, eval_seed=0, progress=False)
    assert not (out / JOURNAL_DIR).exists()  # report.json lists everything
    label = out / "labels" / "b.png"
    label.write_bytes(label.read_bytes()[: len(label.read_bytes()) // 2])  # cut short
    (out / "overlays" / "c.jpg").unlink()
    (out / "overlays" / ".d.x1y2.tmp.jpg").write_bytes(b"half")  # a killed write
    with pytest.raises(OutputExistsError, match="resume=true"):
        run_predict(ham, images, out, protocol=FAST, eval_seed=0, progress=False)
    report = run_predict(
        ham, images, out, protocol=FAST, eval_seed=0, progress=False, resume=True,
        predict={"num_workers": 2},
    )  # fmt: skip
    assert sorted(p.name for p in report.written) == ["b.jpg", "c.png"]
    assert sorted(p.name for p in report.already_complete) == ["a.png", "d.png"]
    assert files(out) == files(fresh)  # the temporary file is gone too
    counts = json.loads((out / "report.json").read_text())["counts"]
    assert counts == {"done": 2, "skipped": 2, "failed": 0}


def test_resume_keeps_refusing_foreign_files(ham: Path, images: Path, tmp_path: Path):
    out = tmp_path / "out"
    (out / "labels").mkdir(parents=True)
    (out / "labels" / "a.png").write_bytes(b"ground truth")
    with pytest.raises(OutputExistsError, match="not written by predict.py"):
        run_predict(ham, images, out, protocol=FAST, progress=False, resume=True)
    assert (out / "labels" / "a.png").read_bytes() == b"ground truth"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"resume": True, "overwrite": True}, "give one"),
        ({"predict": {"outputs": "masks"}}, "predict.outputs='masks' is not one of"),
        ({"predict": {"num_workers": -1}}, "predict.num_workers=-1 must be an integer >= 0"),
        ({"predict": {"batch_size": 0}}, "predict.batch_size=0 must be an integer >= 1"),
        ({"predict": {"writers": 0}}, "predict.writers=0 must be an integer >= 1"),
    ],
)
def test_bad_options(ham: Path, images: Path, tmp_path: Path, kwargs, words):
    with pytest.raises(ConfigError, match=words):
        run_predict(ham, images, tmp_path / "out", protocol=FAST, progress=False, **kwargs)
    assert not (tmp_path / "out" / "labels").exists()


def test_progress_lines(ham: Path, images: Path, tmp_path: Path, caplog):
    with caplog.at_level(logging.INFO, logger="vanseg"):
        run_predict(ham, images, tmp_path / "out", protocol=FAST, progress=True)
    assert f"predict: {len(SIZES)}/{len(SIZES)} images" in caplog.text
    assert "img/s, ETA 0:00:00" in caplog.text
