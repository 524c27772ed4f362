"""The published recipes: learning rates, parameter groups, resolved experiment configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import vanseg
from vanseg.config.compose import compose_config, config_dir
from vanseg.training.optim import param_groups
from vanseg.training.schedules import poly_factor, poly_with_warmup

# docs/reference.md §7: the original hook's learning rates.
LIGHT_HAM_TINY_LR = {
    0: 6e-11,
    750: 2.98594e-5,
    1499: 5.93982e-5,
    1500: 5.94375e-5,
    80000: 3e-5,
    159999: 3.75e-10,
}
FPN_LR = {0: 2e-4, 20000: 1.07177e-4, 39999: 1.4427e-8}


def _lrs(overrides: list[str], steps: list[int]) -> dict[int, float]:
    """Learning rates of the composed optimizer + scheduler at the given steps."""
    from hydra.utils import instantiate

    cfg = compose_config(overrides)
    params = [torch.nn.Parameter(torch.zeros(1))]
    opt = instantiate(cfg.optimizer)(params)
    sched = instantiate(cfg.scheduler)(opt, max_steps=cfg.trainer.max_steps)
    # LambdaLR sets lr = initial lr x lambda(step) after `step` scheduler steps
    assert opt.param_groups[0]["lr"] == cfg.optimizer.lr * sched.lr_lambdas[0](0)
    return {t: cfg.optimizer.lr * sched.lr_lambdas[0](t) for t in steps}


def test_light_ham_learning_rates() -> None:
    lrs = _lrs(["backbone=van_tiny", "head=light_ham"], list(LIGHT_HAM_TINY_LR))
    for step, expected in LIGHT_HAM_TINY_LR.items():
        assert lrs[step] == pytest.approx(expected, rel=1e-5), step


def test_fpn_learning_rates() -> None:
    for step, expected in FPN_LR.items():
        assert 2e-4 * poly_factor(step, 40000, power=0.9) == pytest.approx(expected, rel=1e-4)
    cfg = compose_config(["head=fpn"])
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay, cfg.scheduler.power) == (2e-4, 1e-4, 0.9)
    assert (cfg.scheduler.warmup_steps, cfg.trainer.max_steps) == (0, 40000)
    assert cfg.trainer.val_check_interval == 4000 and cfg.data.batch_size_per_gpu == 4
    assert cfg.module.no_decay == "none"


def test_schedule_object_steps_per_optimizer_step() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=6e-5)
    sched = poly_with_warmup(opt, max_steps=160000, warmup_steps=1500)
    assert opt.param_groups[0]["lr"] == pytest.approx(6e-11)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(
        6e-5 * (1 - 1 / 160000) * (1 - (1 - 1 / 1500) * (1 - 1e-6))
    )


@pytest.mark.parametrize(("head", "batch"), [("light_ham", 2), ("hamnet", 4), ("upernet", 2)])
def test_head_recipes(head: str, batch: int) -> None:
    cfg = compose_config([f"head={head}"])
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay) == (6e-5, 0.01)
    assert tuple(cfg.optimizer.betas) == (0.9, 0.999) and cfg.optimizer.eps == 1e-8
    assert (cfg.scheduler.power, cfg.scheduler.warmup_steps) == (1.0, 1500)
    assert cfg.trainer.max_steps == 160000 and cfg.trainer.val_check_interval == 16000
    assert cfg.data.batch_size_per_gpu == batch
    assert cfg.module.aux_weight == 0.4 and cfg.module.loss_average == "all_pixels"


def test_original_weight_decay_groups() -> None:
    # docs/reference.md §3.10: only backbone BN/LN are exempt; 8,448 parameters for tiny.
    model = vanseg.build_model("van_tiny", "light_ham")
    decay, no_decay = param_groups(model, "original")
    assert sum(p.numel() for p in no_decay["params"]) == 8448
    names = {id(p): n for n, p in model.named_parameters()}
    exempt = [names[id(p)] for p in no_decay["params"]]
    assert all(n.startswith("backbone.") for n in exempt)
    decayed = {names[id(p)] for p in decay["params"]}
    assert "decode_head.squeeze.gn.weight" in decayed
    assert "backbone.stages.0.blocks.0.layer_scale_1" in decayed
    assert "decode_head.conv_seg.bias" in decayed
    clean = param_groups(model, "norm_bias_scale")[1]["params"]
    assert {names[id(p)] for p in clean} >= {
        "decode_head.squeeze.gn.weight",
        "decode_head.conv_seg.bias",
    }


def test_weight_decay_groups_reach_the_optimizer() -> None:
    from hydra.utils import instantiate

    from vanseg.training.optim import build_optimizer

    cfg = compose_config(["backbone=van_test", "head=upernet"])
    opt = build_optimizer(vanseg.build_model("van_test", "upernet"), instantiate(cfg.optimizer))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]


EXPERIMENTS = sorted(
    p.stem
    for p in (config_dir() / "experiment").glob("*.yaml")
    if p.stem not in ("demo", "finetune_folder")  # not published models
)


def test_one_experiment_per_published_model() -> None:
    assert len(EXPERIMENTS) == 17


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_equals_plain_command(name: str) -> None:
    text = (config_dir() / "experiment" / f"{name}.yaml").read_text()
    backbone = next(
        line.split(": ")[1] for line in text.splitlines() if "override /backbone" in line
    )
    head = next(line.split(": ")[1] for line in text.splitlines() if "override /head" in line)
    assert "mIoU" in text.splitlines()[1]  # the header names the reproduced number
    a = compose_config([f"experiment={name}"])
    b = compose_config([f"backbone={backbone}", f"head={head}", "trainer.devices=8"])
    assert OmegaConf.to_container(a) == OmegaConf.to_container(b)
    assert a.trainer.devices == 8 and a.data.name == "ade20k"


def _package(path: Path, group: str) -> str:
    """Where an option file's keys land: its ``# @package`` header, else the group name."""
    for line in path.read_text().splitlines():
        if line.startswith("# @package"):
            package = line.split()[-1]
            return "" if package == "_global_" else package
    return group


def test_every_config_group_option_composes() -> None:
    for group in ("trainer", "logger", "callbacks", "data", "debug", "optimizer", "scheduler"):
        for path in sorted((config_dir() / group).glob("*.yaml")):
            cfg = compose_config([f"{group}={path.stem}"], return_hydra_config=True)
            assert cfg.hydra.runtime.choices[group] == path.stem, path
            # Every key the option defines is in the composed config, under its package.
            package = _package(path, group)
            node = OmegaConf.select(cfg, package) if package else cfg
            own = OmegaConf.load(path)
            keys = [k for k in own if k != "defaults"]
            missing = [k for k in keys if node is None or k not in node.keys()]
            assert not missing, f"{path}: keys {missing} not under '{package}'"


def test_data_options_share_one_pipeline() -> None:
    base = OmegaConf.load(config_dir() / "data" / "pipeline" / "mmseg_ade20k.yaml")
    assert "eval_scale" in base and "mean" in base  # the pipeline keys live in one file
    for path in sorted((config_dir() / "data").glob("*.yaml")):
        own = OmegaConf.load(path)
        assert "pipeline/mmseg_ade20k@_here_" in own.defaults, path
        assert not set(own) & set(base), f"{path} repeats pipeline keys: {set(own) & set(base)}"
        data = compose_config([f"data={path.stem}"]).data
        assert {k: data[k] for k in base} == OmegaConf.to_container(base), path


def test_train_help_lists_the_groups(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "train.py", "--help"],
        capture_output=True,
        text=True,
        cwd=config_dir().parent,
        check=True,
    ).stdout
    for group in ("backbone:", "head:", "data:", "trainer:", "logger:", "experiment:"):
        assert group in out
    assert "van_large" in out and "light_ham_d256" in out


def test_finetune_recipe_starts_from_the_ade20k_model() -> None:
    cfg = compose_config(["experiment=finetune_folder", "data.root=/data/mine"])
    assert cfg.model.init_from == "light_ham_van_tiny_ade20k"
    assert cfg.data.name == "folder" and cfg.backbone.pretrained is None
    assert cfg.trainer.max_steps < 160000 and cfg.optimizer.lr < 6e-5
    other = compose_config(["experiment=finetune_folder", "model.init_from=me/model"])
    assert other.model.init_from == "me/model"
