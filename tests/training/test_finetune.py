"""Fine-tuning a trained 8-class model on a generated 5-class folder dataset (model.init_from)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch

from vanseg.checkpoint.file import load_checkpoint
from vanseg.config.compose import compose_config
from vanseg.data.synthetic import SyntheticSpec, ensure_synthetic_dataset
from vanseg.tasks.train import train

NAMES = ["sky", "road", "tree", "car", "house"]


def _folder_overrides(root: Path, out: Path) -> list[str]:
    return [
        "data=folder",
        f"data.root={root}",
        "data.num_classes=5",
        "data.reduce_zero_label=true",
        f"data.class_names=[{','.join(NAMES)}]",
        "data.scale=[256,64]",
        "data.crop_size=[64,64]",
        "data.eval_scale=[256,64]",
        "data.num_workers=0",
        "data.batch_size_per_gpu=4",
        "trainer=cpu",
        "backbone=van_test",
        "head=light_ham",
        "head.channels=32",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_model_summary=false",
        "trainer.log_every_n_steps=1",
        "~callbacks.progress_bar",
        "~callbacks.model_summary",
        f"paths.output_dir={out}",
        f"paths.log_dir={out}/logs",
    ]


def _losses(out: Path) -> list[float]:
    with open(out / "csv" / "metrics.csv") as f:
        return [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


@pytest.mark.slow
def test_fine_tune_8_to_5_classes(fast_train_overrides, tmp_path: Path, caplog) -> None:
    source = train(compose_config(fast_train_overrides))["checkpoint"]
    root = ensure_synthetic_dataset(
        SyntheticSpec(num_classes=5, num_train=8, num_val=3, min_side=64, max_side=96),
        tmp_path / "cache",
    )
    out = tmp_path / "fine"
    overrides = [
        *_folder_overrides(root, out),
        f"model.init_from={source}",
        "trainer.max_steps=30",
        "trainer.val_check_interval=30",
        "scheduler.warmup_steps=0",
        "optimizer.lr=2e-3",
    ]
    with caplog.at_level("INFO", logger="vanseg"):
        result = train(compose_config(overrides))
    assert result["steps"] == 30  # step 0, the new schedule: not a resume
    assert re.search(r"re-initialised +2 +decode_head\.conv_seg\.weight", caplog.text)
    losses = _losses(out)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    loaded = load_checkpoint(result["checkpoint"])
    assert list(loaded.meta.class_names) == NAMES and loaded.meta.num_classes == 5
    assert len(loaded.meta.palette) == 5
    assert loaded.entry["config"]["init_from"] == source
    assert loaded.model.decode_head.conv_seg.weight.shape[0] == 5
    # the backbone came from the source run, then moved with the new recipe
    src_state = load_checkpoint(source).model.state_dict()
    key = "backbone.stages.0.patch_embed.proj.weight"
    assert not torch.equal(loaded.model.state_dict()[key], src_state[key])


def test_class_weight_and_ohem_train(fast_train_overrides, caplog) -> None:
    overrides = [
        *fast_train_overrides,
        "trainer.max_steps=2",
        "module.class_weight=[1,2,1,1,0.5,1,1,3]",
        "module.sampler={type: ohem, thresh: 0.7, min_kept: 1000}",
    ]
    with caplog.at_level("INFO", logger="vanseg"):
        result = train(compose_config(overrides))
    assert result["steps"] == 2
    assert "not bands" in caplog.text  # CPU: the banded loss falls back, once
