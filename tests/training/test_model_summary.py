"""The model summary prints torchprofile MACs and no FLOPs column of zeros."""

from __future__ import annotations

from types import SimpleNamespace

import pytorch_lightning as pl
import torch

from vanseg.training.callbacks import ModelSummary


class _Module(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1, bias=False), torch.nn.Conv2d(4, 2, 1, bias=False)
        )


def test_summary_prints_macs_by_hand(capsys) -> None:
    module = _Module()
    trainer = SimpleNamespace(is_global_zero=True, strategy=None)
    rng = torch.get_rng_state()
    ModelSummary(max_depth=2, macs_input_size=[8, 6]).on_fit_start(trainer, module)
    out = capsys.readouterr().out
    # conv 3x3, 3->4 on 8x6: 48 px * 4 * 27 = 5184; conv 1x1, 4->2: 48 * 2 * 4 = 384.
    assert "MACs (torchprofile, eval mode, 1x3x8x6): 5,568 (0.00 G)" in out
    assert "Total params: 116" in out  # 4*3*9 + 2*4
    assert "FLOPs" not in out
    assert module.model.training  # mode restored
    assert torch.equal(torch.get_rng_state(), rng)


def test_summary_without_size_prints_no_macs(capsys) -> None:
    trainer = SimpleNamespace(is_global_zero=True, strategy=None)
    ModelSummary(max_depth=1).on_fit_start(trainer, _Module())
    out = capsys.readouterr().out
    assert "Total params: 116" in out and "MACs" not in out and "FLOPs" not in out
    ModelSummary(max_depth=1, macs_input_size=[8, 8]).on_fit_start(
        SimpleNamespace(is_global_zero=False, strategy=None), _Module()
    )
    assert capsys.readouterr().out == ""  # other ranks print nothing
