"""Broken checkpoint files: one line naming the file and what is wrong with it."""

from __future__ import annotations

import argparse
import logging
import os
import pickle
from pathlib import Path

import pytest
import torch

from vanseg.errors import CheckpointError
from vanseg.training.resume import checkpoints_newest_first, newest_intact_checkpoint
from vanseg.utils.safe_load import load_file


def _good(path: Path) -> Path:
    torch.save({"state_dict": {"w": torch.ones(3)}}, path)
    return path


def _truncated(path: Path) -> Path:
    data = _good(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


BROKEN = {
    "empty": (lambda p: p.write_bytes(b"") and p, "is empty (0 bytes)"),
    "truncated": (_truncated, "is truncated or corrupt"),
    "random": (lambda p: p.write_bytes(os.urandom(4096)) and p, "is not a checkpoint"),
    "text": (lambda p: p.write_text("not a checkpoint") and p, "is not a checkpoint"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
@pytest.mark.parametrize("unsafe", [False, True])
def test_damaged_files_are_named_without_the_unsafe_hint(case, unsafe, tmp_path: Path) -> None:
    make, words = BROKEN[case]
    path = tmp_path / f"{case}.ckpt"
    make(path)
    with pytest.raises(CheckpointError) as err:
        load_file(path, unsafe_load=unsafe)
    message = str(err.value)
    assert message.startswith(str(path)) and words in message
    assert "unsafe_load" not in message  # loading unsafely would not help a damaged file


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_only_valid_pickles_with_objects_get_the_unsafe_hint(writer, tmp_path: Path) -> None:
    path = tmp_path / "objects.pth"
    payload = {"args": argparse.Namespace(lr=1.0)}
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(CheckpointError, match="set unsafe_load=true") as err:
        load_file(path)
    assert str(path) in str(err.value) and "pickled Python objects" in str(err.value)
    if writer == "torch":
        assert "argparse.Namespace" in str(err.value)
        assert load_file(path, unsafe_load=True)["args"].lr == 1.0


def test_last_skips_a_damaged_newest_checkpoint(tmp_path: Path, caplog) -> None:
    step = _good(tmp_path / "step_000030.ckpt")
    last = _truncated(tmp_path / "last.ckpt")
    os.utime(step, (1_000, 1_000))  # last.ckpt is the newest
    with caplog.at_level(logging.WARNING, logger="vanseg"):
        chosen = newest_intact_checkpoint(checkpoints_newest_first([tmp_path]))
    assert chosen == step
    assert any(
        str(last) in r.getMessage() and "truncated" in r.getMessage() for r in caplog.records
    )


def test_last_prefers_an_intact_last_ckpt(tmp_path: Path) -> None:
    last = _good(tmp_path / "last.ckpt")
    _good(tmp_path / "step_000030.ckpt")
    os.utime(last, (1_000, 1_000))  # even when an older file
    assert newest_intact_checkpoint(checkpoints_newest_first([tmp_path])) == last


def test_last_with_every_checkpoint_damaged_lists_them(tmp_path: Path) -> None:
    (tmp_path / "last.ckpt").write_bytes(b"")
    _truncated(tmp_path / "step_000010.ckpt")
    with pytest.raises(CheckpointError, match="no intact checkpoint") as err:
        newest_intact_checkpoint(checkpoints_newest_first([tmp_path]))
    assert "last.ckpt is empty" in str(err.value) and "step_000010.ckpt is truncated" in str(
        err.value
    )
