"""DataModules: config instantiation, batches on the generated dataset, eval at original size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from tests.data.data_helpers import SMALL_SPEC
from vanseg.config.compose import compose_config
from vanseg.data import ADE20KDataModule, SyntheticDataModule
from vanseg.errors import InputNotFoundError


def synthetic_overrides(cache) -> list[str]:
    spec = SMALL_SPEC
    return [
        "data=synthetic",
        f"data.cache_dir={cache}",
        f"data.num_train={spec.num_train}",
        f"data.num_val={spec.num_val}",
        f"data.min_side={spec.min_side}",
        f"data.max_side={spec.max_side}",
        f"data.num_classes={spec.num_classes}",
        "data.num_workers=0",
    ]


@pytest.fixture
def synthetic_dm(synthetic_cache) -> SyntheticDataModule:
    dm = instantiate(compose_config(synthetic_overrides(synthetic_cache)).data)
    dm.prepare_data()
    return dm


def test_ade20k_config_instantiates_with_the_original_settings():
    cfg = compose_config(["data=ade20k"])
    for key in ("name", "root", "num_classes", "ignore_index", "reduce_zero_label"):
        assert key in cfg.data
    assert cfg.head.num_classes == 150  # read through ${data.num_classes}
    dm = instantiate(cfg.data)
    assert isinstance(dm, ADE20KDataModule) and dm.name == "ade20k"
    assert dm.num_classes == 150 and dm.ignore_index == 255 and dm.reduce_zero_label
    assert dm.class_names[0] == "wall" and dm.palette[0] == (120, 120, 120)
    assert dm.batch_size_per_gpu == 2 and dm.val_batch_size == 1
    assert dm.val_transform.size_divisor is None and dm.test_transform.size_divisor == 32


def test_pipeline_options_reach_the_transforms_and_a_misspelt_one_is_named(tmp_path):
    dm = ADE20KDataModule(root=tmp_path, crop_size=(64, 48), mean=(1.0, 2.0, 3.0))
    assert dm.train_transform.crop_size == (64, 48)
    assert dm.val_transform.mean == (1.0, 2.0, 3.0) == dm.test_transform.mean
    with pytest.raises(TypeError, match=r"\['crop_sise'\].*crop_size"):
        ADE20KDataModule(root=tmp_path, crop_sise=(64, 64))


def test_missing_dataset_fails_in_prepare_data_with_help(tmp_path):
    dm = instantiate(compose_config(["data=ade20k", f"data.root={tmp_path / 'ade'}"]).data)
    with pytest.raises(InputNotFoundError, match="data=synthetic"):
        dm.prepare_data()


def test_folder_config_reads_a_custom_dataset(tiny_ade_root):
    overrides = [
        "data=folder",
        f"data.root={tiny_ade_root}",
        "data.num_classes=5",
        "data.class_names=[a,b,c,d,e]",
        "data.reduce_zero_label=true",
        "data.num_workers=0",
    ]
    cfg = compose_config(overrides)
    assert cfg.head.num_classes == 5
    dm = instantiate(cfg.data)
    assert dm.class_names == ("a", "b", "c", "d", "e") and len(dm.palette) == 5
    dm.prepare_data()
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (1, 3, 512, 683)  # 64x48 upscaled to short side 512
    assert batch["mask"].shape == (1, 48, 64)  # original resolution
    raw = np.asarray(Image.open(tiny_ade_root / "annotations/validation/img_0000.png"))
    np.testing.assert_array_equal(batch["mask"][0].numpy(), np.where(raw == 0, 255, raw - 1))


def test_training_batches_on_the_generated_dataset(synthetic_dm):
    assert synthetic_dm.num_classes == 6 and synthetic_dm.class_names[0] == "stripes_0"
    synthetic_dm.setup("fit")
    batch = next(iter(synthetic_dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 512, 512) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (2, 512, 512) and batch["mask"].dtype == torch.int64
    assert set(batch["mask"].unique().tolist()) <= set(range(6)) | {255}
    assert len(batch["name"]) == 2


def test_eval_batches_keep_the_original_label(synthetic_dm):
    synthetic_dm.setup(None)
    root = synthetic_dm.root
    val = list(synthetic_dm.val_dataloader())
    test = list(synthetic_dm.test_dataloader())
    assert len(val) == len(test) == SMALL_SPEC.num_val  # one image per batch, none repeated
    for v, t in zip(val, test, strict=True):
        name = v["name"][0]
        raw = np.asarray(Image.open(root / "annotations/validation" / f"{name}.png"))
        np.testing.assert_array_equal(v["mask"][0].numpy(), np.where(raw == 0, 255, raw - 1))
        h, w = raw.shape
        assert min(v["image"].shape[-2:]) == 512  # short side 512 (sides are <= 301 px)
        assert abs(v["image"].shape[-1] / v["image"].shape[-2] - w / h) < 0.01
        assert t["image"].shape[-1] % 32 == 0 and t["image"].shape[-2] % 32 == 0
        assert torch.equal(t["mask"], v["mask"])


def test_training_stream_resumes_bitwise(synthetic_dm):
    synthetic_dm.setup("fit")
    it = iter(synthetic_dm.train_dataloader())
    batches = [next(it) for _ in range(3)]
    state = synthetic_dm.state_dict()
    assert state == {"seed": 0, "train_samples_seen": 0}

    synthetic_dm.load_state_dict({"seed": 0, "train_samples_seen": 4})  # 2 batches of 2
    resumed = next(iter(synthetic_dm.train_dataloader()))
    assert resumed["name"] == batches[2]["name"]
    assert torch.equal(resumed["image"], batches[2]["image"])
    assert torch.equal(resumed["mask"], batches[2]["mask"])
    with pytest.raises(ValueError, match="seed"):
        synthetic_dm.load_state_dict({"seed": 1, "train_samples_seen": 4})


def test_resume_with_another_world_size_continues_the_global_stream(synthetic_cache):
    def first_names(rank, world, seen):
        extra = [f"+data.rank={rank}", f"+data.world_size={world}"]
        dm = instantiate(compose_config(synthetic_overrides(synthetic_cache) + extra).data)
        dm.load_state_dict({"seed": 0, "train_samples_seen": seen})
        dm.setup("fit")
        it = iter(dm.train_dataloader())
        return [name for _ in range(2) for name in next(it)["name"]]

    single = first_names(0, 1, 0)  # global positions 0..3
    # 2 samples seen on one device, then two ranks: rank r continues at positions 2 + r, 4 + r
    assert first_names(0, 2, 2)[:2] == [single[2], first_names(0, 1, 4)[0]]
    assert first_names(1, 2, 2)[0] == single[3]


def test_worker_processes_do_not_change_the_samples(synthetic_cache):
    batches = []
    for workers in (0, 2):
        overrides = synthetic_overrides(synthetic_cache) + [f"data.num_workers={workers}"]
        dm = instantiate(compose_config(overrides).data)
        dm.setup("fit")
        it = iter(dm.train_dataloader())
        batches.append([next(it) for _ in range(2)])
    for a, b in zip(*batches, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])


def test_ranks_see_different_training_samples_and_split_validation(synthetic_cache):
    names, val_names = [], []
    for rank in range(2):
        overrides = synthetic_overrides(synthetic_cache) + [
            f"+data.rank={rank}",
            "+data.world_size=2",
        ]
        dm = instantiate(compose_config(overrides).data)
        dm.setup(None)
        batch = next(iter(dm.train_dataloader()))
        names.append(batch["name"])
        val_names.append([b["name"][0] for b in dm.val_dataloader()])
    assert names[0] != names[1]
    assert sorted(val_names[0] + val_names[1]) == sorted(dm.datasets["val"].names)
