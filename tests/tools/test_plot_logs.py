"""plot_logs: curves read from Lightning's metrics.csv, one PNG for one or several runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vanseg.errors import USER_ERROR_EXIT, ConfigError
from vanseg.tools.plot_logs import PANELS, find_runs, main, plot_runs, read_metrics

# Lightning's CSV layout: one row per logging call, empty cells for the other columns; the
# step-40 validation row is repeated with a new value as a resumed run appends it.
CSV = """\
epoch,step,train/decode_loss,train/loss,train/lr,val/aAcc,val/mAcc,val/mIoU
0,9,2.0,2.5,0.0001,,,
0,19,1.5,1.75,0.0002,,,
0,19,,,,0.5,0.25,0.125
0,29,1.0,1.25,0.0003,,,
0,39,,,,0.75,0.5,0.375
0,39,,,,0.75,0.5,0.5
"""


def _write_run(run_dir: Path, text: str = CSV, overrides: list[str] | None = None) -> Path:
    (run_dir / "csv").mkdir(parents=True)
    (run_dir / "csv" / "metrics.csv").write_text(text)
    if overrides is not None:
        (run_dir / ".hydra").mkdir()
        (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return run_dir


def test_read_metrics_matches_the_hand_written_csv(tmp_path: Path) -> None:
    curves = read_metrics(_write_run(tmp_path / "run") / "csv" / "metrics.csv")
    assert set(curves) == {key for key, _ in PANELS}
    np.testing.assert_array_equal(curves["train/loss"][0], [9, 19, 29])
    np.testing.assert_array_equal(curves["train/loss"][1], [2.5, 1.75, 1.25])
    np.testing.assert_array_equal(curves["train/lr"][1], [1e-4, 2e-4, 3e-4])
    np.testing.assert_array_equal(curves["val/mIoU"][0], [19, 39])
    np.testing.assert_array_equal(curves["val/mIoU"][1], [0.125, 0.5])  # last value of step 39
    np.testing.assert_array_equal(curves["val/mAcc"][1], [0.25, 0.5])


def test_multirun_folder_gives_one_labelled_line_per_run(tmp_path: Path) -> None:
    multirun = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    _write_run(multirun / "0", overrides=["optimizer.lr=0.001"])
    _write_run(multirun / "1", CSV.replace("2.5", "3.5"), overrides=["optimizer.lr=0.01"])
    runs = find_runs([multirun])
    assert [r.label for r in runs] == [
        "2026-01-01_00-00-00/0 (optimizer.lr=0.001)",
        "2026-01-01_00-00-00/1 (optimizer.lr=0.01)",
    ]
    fig = plot_runs(runs)
    axes = fig.axes[: len(PANELS)]
    for ax, (key, _) in zip(axes, PANELS, strict=True):
        assert ax.get_ylabel() == key
        lines = ax.get_lines()
        assert len(lines) == 2
        for line, run in zip(lines, runs, strict=True):
            np.testing.assert_array_equal(line.get_xdata(), run.curves[key][0])
            np.testing.assert_array_equal(line.get_ydata(), run.curves[key][1])
    assert axes[0].get_lines()[1].get_ydata()[0] == 3.5


def test_cli_writes_a_png_and_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    run = _write_run(tmp_path / "run")
    out = main([str(run), "-o", str(tmp_path / "plots" / "curves.png")])
    image = Image.open(out)
    assert image.format == "PNG" and image.size == (1100, 750)
    assert "train/loss=1.25@29" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main([str(run), "-o", str(out)])
    assert exit_info.value.code == USER_ERROR_EXIT
    assert "--overwrite" in capsys.readouterr().err
    main([str(run), "-o", str(out), "--overwrite"])
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]  # no temporary file left


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no csv/metrics.csv under"):
        find_runs([tmp_path])
    with pytest.raises(ConfigError, match="does not exist"):
        find_runs([tmp_path / "missing"])
    bad = _write_run(tmp_path / "bad", CSV.replace("1.75", "n/a"))
    with pytest.raises(ConfigError, match=r"line 3: train/loss='n/a'"):
        find_runs([bad])
