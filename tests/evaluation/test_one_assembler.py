"""``eval.py``, ``predict.py`` and `vanseg.Segmenter` build the same runner (one assembler).

Each records the `Runner` that `vanseg.inference.assemble.assemble` gives it; the settings
(protocol, precision, fast, seed, device, forward module) must be equal, and the three must give
the same mask for the same image and seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

import vanseg
import vanseg.segmenter
import vanseg.tasks.evaluate
from tests.evaluation.test_evaluate import base, checkpoint, data_overrides  # noqa: F401
from vanseg.config.compose import compose_config
from vanseg.inference import assemble as assemble_module
from vanseg.tasks.evaluate import run_eval
from vanseg.tasks.predict import run_predict

OPTIONS = ["inference.mode=slide", "inference.crop=32", "inference.stride=21", "eval_seed=3"]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[assemble_module.Runner]:
    """Every runner the segmenter and the eval task assemble, in order."""
    runners: list[assemble_module.Runner] = []

    def record(*args, **kwargs):
        runner = assemble_module.assemble(*args, **kwargs)
        runners.append(runner)
        return runner

    monkeypatch.setattr(vanseg.segmenter, "assemble", record)
    monkeypatch.setattr(vanseg.tasks.evaluate, "assemble", record)
    return runners


def test_eval_predict_and_segmenter_build_the_same_runner(
    checkpoint: Path,  # noqa: F811
    data_overrides: list[str],  # noqa: F811
    recorded: list[assemble_module.Runner],
    tmp_path: Path,
) -> None:
    cfg = compose_config(
        [*base(checkpoint, tmp_path / "eval", data_overrides), *OPTIONS, "device=cpu"],
        config_name="eval",
    )
    run_eval(cfg, [*data_overrides, *OPTIONS])
    eval_runner = recorded[-1]

    image = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(image).save(images / "a.png")
    inference = OmegaConf.to_container(cfg.inference, resolve=True)
    run_predict(checkpoint, images, tmp_path / "pred", inference, eval_seed=3, device="cpu")
    predict_runner = recorded[-1]

    segmenter = vanseg.Segmenter.from_checkpoint(
        checkpoint, inference=inference, eval_seed=3, device="cpu"
    )
    segmenter_runner = recorded[-1]

    assert len(recorded) == 3
    # eval describes the checkpoint on its data config (eval_scale 256x64 here), predict and
    # the segmenter on the checkpoint's own: the same options, so only base_scale/name differ.
    settings = [r.settings() for r in (eval_runner, predict_runner, segmenter_runner)]
    for s in settings:
        s["protocol"].pop("base_scale"), s["protocol"].pop("name")
    assert settings[0] == settings[1] == settings[2]
    assert settings[0]["protocol"]["mode"] == "slide" and settings[0]["eval_seed"] == 3
    assert settings[0]["forward"] == "Segmentor"  # fp32, not fast: the model itself

    masks = [
        np.asarray(Image.open(tmp_path / "pred" / "labels" / "a.png")),
        segmenter(image).mask,
    ]
    np.testing.assert_array_equal(masks[0], masks[1])
