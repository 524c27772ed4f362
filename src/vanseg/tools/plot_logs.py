"""Training curves of one or several runs as one PNG: loss, learning rate, val mIoU and mAcc.

    python -m vanseg.tools.plot_logs RUN_DIR [RUN_DIR ...] [-o curves.png] [--overwrite]

A RUN_DIR is a training run folder (``outputs/<task>/runs/<time>``) or anything above run
folders, such as a multirun folder (``outputs/<task>/multiruns/<time>``): every
``csv/metrics.csv`` (the CSV logger's file) below it is one run. Runs are labelled with their
folder and, when Hydra recorded them, their command-line overrides. The PNG goes to ``-o``
(default: ``training_curves.png`` in the first RUN_DIR); an existing file is replaced only with
``--overwrite``, and it is written atomically.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vanseg.errors import USER_ERROR_EXIT, ConfigError

__all__ = [
    "PANELS",
    "RunCurves",
    "find_runs",
    "read_metrics",
    "plot_runs",
    "save_figure",
    "main",
]

#: ``(metric key in metrics.csv, panel title)``, one panel each, in reading order.
PANELS: tuple[tuple[str, str], ...] = (
    ("train/loss", "training loss"),
    ("train/lr", "learning rate (first param group)"),
    ("val/mIoU", "val mIoU"),
    ("val/mAcc", "val mAcc"),
)

#: Where the CSV logger puts its file inside a run folder (conf/logger/csv.yaml).
METRICS_FILE = Path("csv") / "metrics.csv"


@dataclass
class RunCurves:
    """The curves of one run: ``curves[key] = (steps, values)``, sorted by step."""

    label: str
    path: Path
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def read_metrics(path: Path, keys: Sequence[str] = tuple(k for k, _ in PANELS)) -> dict:
    """``{key: (steps, values)}`` from a Lightning ``metrics.csv``.

    Lightning writes one row per logging call with empty cells for the other columns. A step
    logged twice (a resumed run appends to the file) keeps its last value. Keys missing from
    the file are missing from the result.
    """
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"cannot read the training log {path}: {err}") from err
    if not rows or "step" not in rows[0]:
        raise ConfigError(f"{path} is not a Lightning metrics.csv (no 'step' column)")
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key in keys:
        by_step: dict[int, float] = {}
        for line, row in enumerate(rows, start=2):
            cell = row.get(key) or ""
            if cell.strip() == "":
                continue
            try:
                by_step[int(row["step"])] = float(cell)
            except ValueError as err:
                raise ConfigError(
                    f"{path} line {line}: {key}={cell!r}, step={row['step']!r} is not a number"
                ) from err
        if by_step:
            steps = np.array(sorted(by_step), dtype=np.int64)
            values = np.array([by_step[s] for s in steps.tolist()], dtype=np.float64)
            curves[key] = (steps, values)
    return curves


def _overrides_label(run_dir: Path) -> str:
    """The run's command-line overrides as Hydra saved them, or ``""``."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return ""
    from omegaconf import OmegaConf

    try:
        overrides = OmegaConf.load(path)
    except Exception:  # a label is optional; the curves still plot
        return ""
    return " ".join(str(o) for o in overrides) if isinstance(overrides, Sequence) else ""


def find_runs(paths: Sequence[str | Path]) -> list[RunCurves]:
    """Every run under ``paths`` (run folders or folders of run folders), with its curves."""
    runs: list[RunCurves] = []
    for given in paths:
        root = Path(given)
        if not root.is_dir():
            raise ConfigError(f"run folder {root} does not exist (or is not a folder)")
        files = sorted(root.rglob(str(METRICS_FILE)))
        if not files:
            raise ConfigError(
                f"no {METRICS_FILE} under {root}. plot_logs reads the CSV logger's file: train "
                "with logger=csv (the default) or logger=csv_tensorboard."
            )
        for metrics in files:
            run_dir = metrics.parent.parent
            name = root.name if run_dir == root else f"{root.name}/{run_dir.relative_to(root)}"
            overrides = _overrides_label(run_dir)
            label = f"{name} ({overrides})" if overrides else name
            runs.append(RunCurves(label, metrics, read_metrics(metrics)))
    return runs


def plot_runs(runs: Sequence[RunCurves], title: str | None = None):
    """A 2x2 :class:`matplotlib.figure.Figure` with one line per run in every panel."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    for ax, (key, panel_title) in zip(axes, PANELS, strict=True):
        ax.set_title(panel_title)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        drawn = 0
        for index, run in enumerate(runs):
            if key not in run.curves:
                continue
            steps, values = run.curves[key]
            marker = "o" if key.startswith("val/") else None
            label = textwrap.fill(run.label, 110)  # long override lists wrap
            ax.plot(steps, values, marker=marker, color=f"C{index % 10}", label=label)
            drawn += 1
        if not drawn:
            ax.text(0.5, 0.5, f"no {key} logged", ha="center", va="center", transform=ax.transAxes)
        if key == "train/lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    handles, labels = axes[0].get_legend_handles_labels()
    if not handles:
        for ax in axes[1:]:
            handles, labels = ax.get_legend_handles_labels()
            if handles:
                break
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 2))
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig, path: str | Path, overwrite: bool = False, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG atomically (temporary file + rename); refuse to replace a file
    unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} exists; pass --overwrite to replace it, or choose -o PATH")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _summary(runs: Sequence[RunCurves]) -> list[str]:
    lines = []
    for run in runs:
        parts = []
        for key, _ in PANELS:
            if key in run.curves:
                steps, values = run.curves[key]
                last = values[-1]
                shown = f"{last:.4g}" if math.isfinite(last) else str(last)
                parts.append(f"{key}={shown}@{int(steps[-1])}")
        lines.append(f"  {run.label}: {', '.join(parts) or 'no curves'}")
    return lines


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m vanseg.tools.plot_logs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run or multirun folder")
    parser.add_argument("-o", "--output", help="PNG path (default: RUN_DIR/training_curves.png)")
    parser.add_argument("--title", help="figure title")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    args = parser.parse_args(argv)
    output = Path(args.output or Path(args.run_dirs[0]) / "training_curves.png")
    try:
        runs = find_runs(args.run_dirs)
        path = save_figure(plot_runs(runs, args.title), output, overwrite=args.overwrite)
    except ConfigError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        raise SystemExit(USER_ERROR_EXIT) from err
    print(f"{len(runs)} run(s) -> {path}")
    print("\n".join(_summary(runs)))
    return path


if __name__ == "__main__":
    main()
