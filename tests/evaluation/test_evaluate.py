"""eval.py and vanseg.tasks.evaluate: protocols, outputs, refusals, DDP, determinism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import vanseg
from vanseg.checkpoint.metadata import ModelMeta
from vanseg.config.compose import compose_config, config_dir, model_config
from vanseg.data.ade20k import ADE20KDataset
from vanseg.data.sampler import ShardSampler
from vanseg.errors import ConfigError, InputNotFoundError, OutputExistsError, VansegError
from vanseg.evaluation.loop import evaluate_dataset
from vanseg.evaluation.metrics import confusion_matrix
from vanseg.inference.assemble import resolve_inference
from vanseg.inference.passes import predict_probs, set_eval_seed
from vanseg.inference.protocol import MS_RATIOS, InferenceProtocol
from vanseg.tasks.evaluate import RESULT_FILES, resolve_data_config, run_eval
from vanseg.utils.distributed import worker_rank_overrides

REPO = config_dir().parent
K = 8
NUM_VAL = 5  # odd: two processes hold 3 and 2 images
MODEL_OVERRIDES = [
    "backbone=van_test",
    "head=light_ham",
    "head.channels=32",
    f"data.num_classes={K}",
    "backbone.pretrained=null",
]


@pytest.fixture(scope="module")
def data_overrides(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A generated 8-class dataset: 5 validation images of 64-96 px, evaluated at short side 64."""
    cache = tmp_path_factory.mktemp("synthetic")
    return [
        "data=synthetic",
        f"data.cache_dir={cache}",
        "data.num_train=4",
        f"data.num_val={NUM_VAL}",
        "data.min_side=64",
        "data.max_side=96",
        "data.eval_scale=[256,64]",
    ]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A converted-style checkpoint: model config only, no run config."""
    model_cfg = model_config(compose_config(MODEL_OVERRIDES))
    torch.manual_seed(0)
    model = vanseg.build_model(
        "van_test", "light_ham", num_classes=K, overrides=["head.channels=32"]
    )
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    vanseg.save_model(model, model_cfg, path)
    return path


@pytest.fixture(scope="module")
def train_checkpoint(
    checkpoint: Path, data_overrides: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Like a train.py checkpoint: ``model.``-prefixed weights and the run config with ``data``."""
    run_cfg = compose_config([*MODEL_OVERRIDES, *data_overrides])
    ckpt = torch.load(checkpoint, weights_only=True)
    state = {f"model.{k}": v for k, v in ckpt["state_dict"].items()}
    config = {"data": OmegaConf.to_container(run_cfg.data, resolve=True)}
    path = tmp_path_factory.mktemp("train_ckpt") / "last.ckpt"
    torch.save({"state_dict": state, "vanseg": {**ckpt["vanseg"], "config": config}}, path)
    return path


def evaluate(overrides: list[str]):
    return run_eval(compose_config(overrides, config_name="eval"), overrides)


def base(ckpt: Path, output: Path, data_overrides: list[str]) -> list[str]:
    return [f"ckpt_path={ckpt}", f"output={output}", "progress=false", *data_overrides]


def load_val(out: Path) -> ADE20KDataset:
    """The validation split that wrote ``out/metrics.json``."""
    root = json.loads((out / "metrics.json").read_text())["data"]["root"]
    return ADE20KDataset(root, "validation", num_classes=K)


@pytest.mark.parametrize(
    ("name", "extra", "passes", "mode"),
    [
        ("whole", [], 1, "whole"),
        ("ms_flip", ["tta=ms_flip"], 12, "whole"),
        # Small windows so that the sliding really slides on these tiny images.
        ("slide", ["inference.mode=slide", "inference.crop=64", "inference.stride=43"], 1, "slide"),
    ],
)
def test_protocols_print_and_write_results(
    name, extra, passes, mode, checkpoint, data_overrides, tmp_path, capsys
):
    out = tmp_path / name
    result = evaluate([*base(checkpoint, out, data_overrides), "eval_seed=0", *extra])
    assert sorted(p.name for p in out.iterdir()) == sorted(RESULT_FILES)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["num_images"] == result.num_images == NUM_VAL
    assert saved["protocol"]["mode"] == mode and result.protocol.passes == passes
    assert saved["protocol"]["base_scale"] == [256, 64] and saved["protocol"]["size_divisor"] == 32
    assert saved["protocol_text"] in capsys.readouterr().out
    assert saved["summary"]["mIoU"] == pytest.approx(round(100 * result.metrics["mIoU"], 2))
    assert saved["checkpoint"] == str(checkpoint.resolve()) and saved["data_source"].startswith(
        "command line"
    )
    confmat = np.load(out / "confusion.npy")
    assert confmat.dtype == np.int64 and confmat.shape == (K, K)
    dataset = load_val(out)
    labelled = sum(int((dataset.load(i)[1] != 255).sum()) for i in range(len(dataset)))
    assert confmat.sum() == labelled  # every labelled pixel counted exactly once
    rows = (out / "per_class.csv").read_text().splitlines()
    assert rows[0].startswith("index,class,IoU,Acc") and len(rows) == K + 1


def test_whole_equals_a_direct_loop_at_label_resolution(checkpoint, data_overrides, tmp_path):
    result = evaluate([*base(checkpoint, tmp_path, data_overrides), "eval_seed=0"])
    model = vanseg.load_model(checkpoint)
    set_eval_seed(model, 0)
    protocol = InferenceProtocol(base_scale=(256, 64), size_divisor=32)
    dataset = load_val(tmp_path)
    expected = torch.zeros(K, K, dtype=torch.int64)
    for i in range(len(dataset)):
        image, label = dataset.load(i)
        probs = predict_probs(model, image, protocol)  # at the image = label size
        expected += confusion_matrix(
            probs[0].argmax(0), torch.from_numpy(label.astype(np.int64)), K
        )
    assert torch.equal(result.metrics["confmat"], expected)


def test_shards_of_two_ranks_sum_to_one_process(checkpoint, data_overrides, tmp_path):
    model = vanseg.load_model(checkpoint)
    set_eval_seed(model, 0)
    evaluate([*base(checkpoint, tmp_path, data_overrides), "eval_seed=0"])
    dataset = load_val(tmp_path)
    protocol = InferenceProtocol(base_scale=(256, 64), size_divisor=32)
    shards = [list(ShardSampler(NUM_VAL, rank, 2)) for rank in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(NUM_VAL))  # 3 + 2, none twice
    parts = [evaluate_dataset(model, dataset, protocol, shard)[0].confmat for shard in shards]
    whole, count = evaluate_dataset(model, dataset, protocol, range(NUM_VAL))
    assert count == NUM_VAL
    assert torch.equal(parts[0] + parts[1], whole.confmat)
    assert torch.equal(whole.confmat, torch.from_numpy(np.load(tmp_path / "confusion.npy")))


def test_data_config_comes_from_the_checkpoint(train_checkpoint, tmp_path):
    overrides = [f"ckpt_path={train_checkpoint}", f"output={tmp_path}", "progress=false"]
    result = evaluate([*overrides, "data.eval_scale=[128,32]", "eval_seed=0"])
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["data_source"] == "checkpoint" and saved["data"]["name"] == "synthetic"
    assert result.num_images == NUM_VAL
    assert result.protocol.base_scale == (128, 32)  # a data.<key> override applies to it


def test_command_line_data_choice_replaces_the_stored_one(train_checkpoint, tmp_path):
    # data=ade20k (150 classes) replaces the stored synthetic config: the classes clash.
    overrides = [f"ckpt_path={train_checkpoint}", f"output={tmp_path}", "data=ade20k"]
    with pytest.raises(ConfigError, match=r"predicts 8 classes but dataset 'ade20k' has 150"):
        evaluate(overrides)


def test_resolve_data_config():
    stored = {"_target_": "x.Y", "name": "synthetic", "eval_scale": [512, 128], "palette": None}
    overrides = ["data.eval_scale=[64,16]", "~data.palette", "+data.extra=3"]
    cfg = compose_config(overrides, config_name="eval")
    data, source = resolve_data_config(cfg, stored, overrides)
    assert source == "checkpoint"
    assert data == {"_target_": "x.Y", "name": "synthetic", "eval_scale": [64, 16], "extra": 3}
    data, source = resolve_data_config(cfg, None, overrides)
    assert source == "eval.yaml default" and data["name"] == "ade20k"
    cfg = compose_config(["data=folder", "data.root=r", "data.num_classes=3"], config_name="eval")
    data, source = resolve_data_config(cfg, stored, ["data=folder", "data.root=r"])
    assert data["name"] == "folder" and source.startswith("command line")


def test_protocol_takes_scale_divisor_and_normalisation_from_the_checkpoint_data():
    model_cfg = model_config(compose_config(MODEL_OVERRIDES))
    data = {
        "name": "x",
        "num_classes": K,
        "class_names": None,
        "palette": None,
        "eval_scale": [512, 128],
        "test_size_divisor": 16,
        "mean": [1, 2, 3],
        "std": [4, 5, 6],
    }
    meta = ModelMeta.from_model_and_data(model_cfg, data)
    options = {"mode": "whole", "base_scale": "checkpoint", "size_divisor": "checkpoint"}
    plain = resolve_inference(meta, options)
    assert plain.base_scale == (512, 128) and plain.size_divisor == 16
    assert plain.scales == (1.0,) and not plain.flip and plain.mean == (1.0, 2.0, 3.0)
    assert plain.name.startswith("test.py default for light_ham")
    aug = resolve_inference(meta, options, "ms_flip")
    assert aug.scales == MS_RATIOS and aug.flip and aug.size_divisor == 16
    assert aug.describe().startswith("test.py --aug-test (light_ham)")
    custom = resolve_inference(meta, {**options, "size_divisor": None, "mean": [0, 0, 0]})
    assert custom.size_divisor is None and custom.mean == (0.0, 0.0, 0.0)
    assert custom.name.endswith("with size_divisor=None")
    with pytest.raises(VansegError, match="invalid inference options"):
        resolve_inference(meta, {**options, "stride": 0})


def test_class_count_mismatch_names_both_counts(checkpoint, tiny_ade_root, tmp_path):
    overrides = [
        f"ckpt_path={checkpoint}",
        f"output={tmp_path}",
        "data=folder",
        f"data.root={tiny_ade_root}",
        "data.num_classes=5",
    ]
    with pytest.raises(ConfigError, match=r"predicts 8 classes but dataset 'folder' has 5"):
        evaluate(overrides)


def test_missing_checkpoint_is_named(tmp_path):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(InputNotFoundError, match=f"checkpoint not found: ckpt_path={missing}"):
        evaluate([f"ckpt_path={missing}", f"output={tmp_path}"])


def test_checkpoint_without_config_says_how_to_convert(checkpoint, tmp_path):
    raw = tmp_path / "raw.pth"
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    torch.save({"meta": {}, "state_dict": state}, raw)  # like an mmseg file: weights only
    with pytest.raises(
        VansegError, match=r"(?s)no vanseg model config.*vanseg\.tools\.convert"
    ) as err:
        evaluate([f"ckpt_path={raw}", f"output={tmp_path / 'out'}"])
    assert "backbone=<van_tiny" in str(err.value) and "head=<light_ham" in str(err.value)
    assert f"data.num_classes={K}" in str(err.value)  # read from the classifier weights


def test_existing_results_are_not_overwritten(checkpoint, data_overrides, tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    overrides = base(checkpoint, tmp_path, data_overrides)
    with pytest.raises(
        OutputExistsError, match=r"metrics.json already exists; pass overwrite=true"
    ):
        evaluate(overrides)
    assert (tmp_path / "metrics.json").read_text() == "{}"
    evaluate([*overrides, "overwrite=true"])
    assert json.loads((tmp_path / "metrics.json").read_text())["num_images"] == NUM_VAL


def test_eval_seed_makes_evaluation_deterministic(checkpoint, data_overrides, tmp_path):
    runs = [
        evaluate([*base(checkpoint, tmp_path / str(i), data_overrides), "eval_seed=3"])
        for i in range(2)
    ]
    assert torch.equal(runs[0].metrics["confmat"], runs[1].metrics["confmat"])
    saved = [json.loads((tmp_path / str(i) / "metrics.json").read_text()) for i in range(2)]
    assert saved[0]["summary"] == saved[1]["summary"] and saved[0]["eval_seed"] == 3


def test_without_eval_seed_the_ham_head_is_random(checkpoint):
    # The default keeps the original's fresh random NMF bases at every forward
    # (docs/pitfalls.md C4): the same image gives different probabilities, so repeated
    # evaluations may differ.
    model = vanseg.load_model(checkpoint)
    image = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    protocol = InferenceProtocol(base_scale=None)
    first, second = (predict_probs(model, image, protocol) for _ in range(2))
    assert not torch.equal(first, second)
    set_eval_seed(model, 0)
    first, second = (predict_probs(model, image, protocol) for _ in range(2))
    assert torch.equal(first, second)


def test_worker_ranks_create_no_run_folders():
    assert worker_rank_overrides({}) == [] and worker_rank_overrides({"RANK": "0"}) == []
    assert "hydra.output_subdir=null" in worker_rank_overrides({"RANK": "1"})


def _cli(args: list[str], tmp_path: Path, launcher: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [*launcher, "eval.py", *args, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_two_processes_give_exactly_the_single_process_numbers(
    checkpoint, data_overrides, tmp_path
):
    single = evaluate([*base(checkpoint, tmp_path / "single", data_overrides), "eval_seed=0"])
    torchrun = str(Path(sys.executable).parent / "torchrun")
    args = [*base(checkpoint, tmp_path / "ddp", data_overrides), "eval_seed=0"]
    proc = _cli(args, tmp_path, [torchrun, "--standalone", "--nproc_per_node", "2"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    saved = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert saved["world_size"] == 2 and saved["num_images"] == NUM_VAL
    confmat = np.load(tmp_path / "ddp" / "confusion.npy")
    assert np.array_equal(confmat, single.metrics["confmat"].numpy())
    assert (
        saved["summary"]
        == json.loads((tmp_path / "single" / "metrics.json").read_text())["summary"]
    )
    assert proc.stdout.count("Per-class results") == 1  # printed by rank 0 only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "run", "single"]


@pytest.mark.slow
def test_cli_prints_table_and_rejects_missing_checkpoint(checkpoint, data_overrides, tmp_path):
    proc = _cli(base(checkpoint, tmp_path / "out", data_overrides), tmp_path, [sys.executable])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "mIoU" in proc.stdout and "stripes_0" in proc.stdout  # class names in the table
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(RESULT_FILES)
    proc = _cli([f"ckpt_path={tmp_path / 'nope.ckpt'}"], tmp_path, [sys.executable])
    assert proc.returncode != 0
    assert f"eval.py: error: checkpoint not found: ckpt_path={tmp_path / 'nope.ckpt'}" in (
        proc.stderr
    )
