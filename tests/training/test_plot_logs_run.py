"""plot_logs on a real (tiny) training run: the plotted data are the CSV logger's values."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vanseg.config.compose import compose_config
from vanseg.tasks.train import train
from vanseg.tools.plot_logs import PANELS, find_runs, main, plot_runs


@pytest.mark.slow
def test_plot_logs_on_a_short_run(fast_train_overrides: list[str], tmp_path: Path) -> None:
    train(compose_config(fast_train_overrides))  # 4 steps, validation at steps 2 and 4
    with (tmp_path / "csv" / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    expected = {
        key: [(int(r["step"]), float(r[key])) for r in rows if r.get(key)] for key, _ in PANELS
    }
    assert len(expected["train/loss"]) == 4 and len(expected["val/mIoU"]) == 2

    (run,) = find_runs([tmp_path])
    fig = plot_runs([run])
    for ax, (key, _) in zip(fig.axes, PANELS, strict=True):
        (line,) = ax.get_lines()
        got = list(zip(line.get_xdata().tolist(), line.get_ydata().tolist(), strict=True))
        assert got == expected[key], key
    out = main([str(tmp_path), "-o", str(tmp_path / "curves.png")])
    assert np.asarray(Image.open(out)).std() > 0  # not a blank image
