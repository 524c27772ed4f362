"""Batch-job behaviour of train.py: text log in files, signal stops, run folders, NaN stops."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from vanseg.config.compose import compose_config, config_dir
from vanseg.config.resolvers import fresh_dir
from vanseg.tasks.train import TrainingDataError, train
from vanseg.training.checkpointing import BestCheckpoint
from vanseg.training.module import NonFiniteLossError
from vanseg.training.signals import AtomicCheckpointIO
from vanseg.training.text_log import format_eta

ROOT = config_dir().parent

#: A text progress line; the fields of the issue's example.
LINE = re.compile(
    r"step (\d+)/(\d+) \| lr \d\.\d\de[-+]\d\d \| loss \d+\.\d{4} \(decode \d+\.\d{4}\) \| "
    r"\d+\.\d{3} s/step \(data \d+\.\d{3}\) \| eta \d+:\d\d:\d\d \| mem \d+\.\d GiB"
)


def _script_args(tiny_data_overrides: list[str], log_dir: Path, *extra: str) -> list[str]:
    return [
        *tiny_data_overrides,
        "trainer=cpu",
        "backbone=van_test",
        "head=light_ham",
        "head.channels=32",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_model_summary=false",
        "~callbacks.model_summary",
        "scheduler.warmup_steps=2",
        "optimizer.lr=1e-3",
        f"paths.log_dir={log_dir}",
        *extra,
    ]


def _start(args: list[str], log_file: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline"}
    out = log_file.open("w")
    return subprocess.Popen(
        [sys.executable, "train.py", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
    )


def _only_run(log_dir: Path, task: str = "train") -> Path:
    runs = sorted((log_dir / task / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def _checksums(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_text_log_in_a_file_and_reuse_of_a_finished_run_is_refused(tiny_data_overrides, tmp_path):
    log_file = tmp_path / "run.log"
    args = _script_args(
        tiny_data_overrides,
        tmp_path / "logs",
        "trainer.max_steps=6",
        "trainer.val_check_interval=3",
        "trainer.log_every_n_steps=2",
    )
    proc = _start(args, log_file)
    assert proc.wait(timeout=600) == 0, log_file.read_text()[-3000:]
    text = log_file.read_text()
    steps = [int(m.group(1)) for m in LINE.finditer(text)]
    assert steps == [2, 4, 6], text  # every log_every_n_steps, and at the end
    assert {m.group(2) for m in LINE.finditer(text)} == {"6"}
    assert len(re.findall(r"val step \d+/6 \| mIoU 0\.\d{4} \| mAcc 0\.\d{4} \| aAcc", text)) == 2
    assert "\x1b[" not in text and "litlogger" not in text
    run = _only_run(tmp_path / "logs")
    # the printed command is one line, whatever its length
    assert f"Evaluate it: python eval.py ckpt_path={run}/checkpoints/best_step_" in text
    train_log = (run / "train.log").read_text()
    assert len(LINE.findall(train_log)) == 3 and "val step 6/6" in train_log
    assert "`Trainer.fit` stopped" in train_log  # Lightning's own messages reach the file
    assert "\x1b[" not in train_log

    # a new run pointed at this finished one is refused and changes nothing there
    before = _checksums(run)
    refused = subprocess.run(
        [sys.executable, "train.py", *args, f"hydra.run.dir={run}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2
    assert f"hydra.run.dir={run} already holds a run" in refused.stderr
    assert _checksums(run) == before

    # resuming that very run continues there and appends: nothing earlier is rewritten
    old_log = (run / "train.log").read_text()
    resumed = subprocess.run(
        [
            sys.executable,
            "train.py",
            *[a for a in args if not a.startswith("trainer.max_steps")],
            "trainer.max_steps=8",
            f"hydra.run.dir={run}",
            f"ckpt_path={run}/checkpoints/last.ckpt",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = _checksums(run)
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "checkpoints/step_000006.ckpt"):
        assert after[name] == before[name], name
    assert after["results.1.json"] == before["results.json"]  # the earlier result, kept
    assert "ckpt_path=" in (run / ".hydra/resume_1/overrides.yaml").read_text()
    assert (run / "train.log").read_text().startswith(old_log)
    assert "step 8/8" in (run / "train.log").read_text()
    assert after["csv/metrics.csv"] == before["csv/metrics.csv"]
    assert "train/loss" in (run / "csv/resume_1/metrics.csv").read_text()


@pytest.mark.slow
def test_two_runs_with_the_same_folder_name_get_two_folders(tiny_data_overrides, tmp_path):
    base = tmp_path / "runs" / "same-second"
    args = _script_args(
        tiny_data_overrides,
        tmp_path / "logs",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        # the name both runs would get when started in the same second
        f"hydra.run.dir=${{vanseg.fresh_dir:{base}}}",
    )
    procs = [_start([*args, f"seed={i}"], tmp_path / f"run{i}.log") for i in range(2)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    folders = sorted((tmp_path / "runs").iterdir())
    assert [f.name for f in folders] == ["same-second", "same-second_1"]
    seeds = set()
    for folder in folders:
        ckpts = {p.name for p in (folder / "checkpoints").iterdir()}
        assert "last.ckpt" in ckpts and not any("-v1" in n for n in ckpts), ckpts
        overrides = (folder / ".hydra" / "overrides.yaml").read_text()
        seeds.add(re.search(r"seed=(\d)", overrides).group(1))
        assert '"steps": 2' in (folder / "results.json").read_text()
        assert torch.load(folder / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    assert seeds == {"0", "1"}  # each folder holds its own run's files


def _wait_for(path: Path, pattern: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if re.search(pattern, path.read_text()):
            return
        if proc.poll() is not None:
            raise AssertionError(f"train.py ended early:\n{path.read_text()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} in {path}")


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_the_current_step_and_resumes_exactly(
    tiny_data_overrides, fast_train_overrides, tmp_path, signum, code
):
    max_steps = 12
    log_file = tmp_path / "run.log"
    args = _script_args(
        tiny_data_overrides,
        tmp_path / "logs",
        f"trainer.max_steps={max_steps}",
        "trainer.val_check_interval=100",
        "trainer.log_every_n_steps=1",
        "backbone.drop_path_rate=0.1",
    )
    proc = _start(args, log_file)
    _wait_for(log_file, r"step 3/12 \|", proc)
    proc.send_signal(signum)
    assert proc.wait(timeout=300) == code, log_file.read_text()[-3000:]
    run = _only_run(tmp_path / "logs")
    last = run / "checkpoints" / "last.ckpt"
    stopped = torch.load(last, weights_only=False)
    step = stopped["global_step"]
    text = log_file.read_text()
    last_logged = max(int(m.group(1)) for m in LINE.finditer(text))
    assert 3 <= step < max_steps and step == last_logged  # the step reached, not an older one
    assert f"training stopped at step {step}, checkpoint of step {step}: {last}" in text
    assert f'"steps": {step}' in (run / "results.json").read_text()
    print(f"{signal.Signals(signum).name}: exit code {code}, checkpoint step {step}")
    if signum != signal.SIGTERM:
        return
    # resuming the signal checkpoint gives the uninterrupted run's weights bitwise
    common = [
        *fast_train_overrides,
        f"trainer.max_steps={max_steps}",
        "trainer.val_check_interval=100",
    ]
    train(compose_config([*common, f"paths.output_dir={tmp_path}/resumed", f"ckpt_path={last}"]))
    train(compose_config([*common, f"paths.output_dir={tmp_path}/straight"]))
    a = torch.load(tmp_path / "straight/checkpoints/last.ckpt", weights_only=False)
    b = torch.load(tmp_path / "resumed/checkpoints/last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] == max_steps
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)


@pytest.mark.usefixtures("loss_nan_after_three_steps")
def test_non_finite_loss_keeps_the_checkpoint_before_the_bad_step(fast_train_overrides, tmp_path):
    # a checkpoint after every step: last.ckpt would hold the weights that gave the NaN
    overrides = [
        *fast_train_overrides,
        "trainer.val_check_interval=1",
        "+trainer.limit_val_batches=0",  # checkpoints only: faster
        "~callbacks.best_checkpoint",
    ]
    with pytest.raises(NonFiniteLossError, match="at step 3") as err:
        train(compose_config(overrides))
    named = Path(str(err.value).rsplit("Last checkpoint: ", 1)[1])
    assert named.name == "step_000002.ckpt"
    ckpts = tmp_path / "checkpoints"
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["global_step"] == 2
    assert torch.load(ckpts / "nonfinite_step_000003.ckpt", weights_only=False)["global_step"] == 3
    assert not (ckpts / "step_000003.ckpt").exists()


def test_dataset_error_while_training_saves_the_step(fast_train_overrides, monkeypatch, tmp_path):
    from vanseg.data import ade20k

    real = ade20k.ADE20KDataset.load
    calls = {"n": 0}
    bad = tmp_path / "broken.png"

    def failing_load(self, index):
        calls["n"] += 1
        if calls["n"] > 6:  # batch size 2: steps 0-2 load fine, the 4th batch fails
            raise ade20k.DatasetError(f"{bad}: cannot read the label image")
        return real(self, index)

    monkeypatch.setattr(ade20k.ADE20KDataset, "load", failing_load)
    overrides = [*fast_train_overrides, "trainer.val_check_interval=100"]
    with pytest.raises(TrainingDataError, match="broken.png") as err:
        train(compose_config(overrides))
    assert err.value.exit_code == 2 and isinstance(err.value, ade20k.DatasetError)
    last = tmp_path / "checkpoints" / "last.ckpt"
    step = torch.load(last, weights_only=False)["global_step"]
    # the loader reads one batch ahead: the 4th batch fails while step 2 or 3 is current
    assert step in (2, 3)
    assert f"Training stopped at step {step}; checkpoint: {last}" in str(err.value)


def test_best_score_survives_a_resume_in_another_folder(tmp_path) -> None:
    old = BestCheckpoint(dirpath=tmp_path / "a", monitor="val/mIoU", mode="max", save_top_k=1)
    old.best_model_score, old.best_model_path = torch.tensor(0.5), str(tmp_path / "a/best.ckpt")
    old.best_k_models = {old.best_model_path: old.best_model_score}
    new = BestCheckpoint(dirpath=tmp_path / "b", monitor="val/mIoU", mode="max", save_top_k=1)
    new.load_state_dict(old.state_dict())
    assert new.best_model_path == str(tmp_path / "a/best.ckpt")
    assert float(new.best_model_score) == 0.5
    trainer = SimpleNamespace(strategy=SimpleNamespace(reduce_boolean_decision=lambda x: x))
    assert not new.check_monitor_top_k(trainer, torch.tensor(0.3))  # worse: not "best"
    assert new.check_monitor_top_k(trainer, torch.tensor(0.6))


def test_atomic_checkpoint_save_keeps_the_old_file_on_failure(tmp_path) -> None:
    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, target)
    with pytest.raises(Exception):  # noqa: B017 - any pickling error
        io.save_checkpoint({"global_step": 2, "bad": lambda: None}, target)
    assert torch.load(target, weights_only=False) == {"global_step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left


def test_fresh_dir_never_reuses_a_folder(tmp_path) -> None:
    from vanseg.config import resolvers

    base = str(tmp_path / "2026-01-01_00-00-00")
    first = fresh_dir(base)
    resolvers._made.clear()  # as a second process would
    second = fresh_dir(base)
    assert (first, second) == (base, base + "_1")
    assert Path(first).is_dir() and Path(second).is_dir()


def test_eta_format() -> None:
    assert format_eta(18 * 3600 + 14 * 60 + 2) == "18:14:02"
    assert format_eta(30 * 3600 + 59.6) == "30:01:00"
