"""Hydra callbacks: a summary of every job's final metrics at the end of a multirun."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from vanseg.errors import USER_ERROR_EXIT
from vanseg.utils.cli import JOB_ERROR_FILE

__all__ = ["SweepSummary", "RESULT_FILE"]

#: Written by every training job into its output folder (see vanseg.tasks.train).
RESULT_FILE = "results.json"


class SweepSummary(Callback):
    """After a multirun, writes ``summary.json`` and prints one line per job.

    A job that failed (its folder holds ``error.json``, `vanseg.utils.cli.user_errors`) is
    listed with its error line; the sweep then exits with status 2 once every job has run.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = []
        jobs = sorted(
            (p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name),
        )
        for job in jobs:
            result, error = job / RESULT_FILE, job / JOB_ERROR_FILE
            if error.exists():
                rows.append({"job": job.name, "failed": True, **json.loads(error.read_text())})
            elif result.exists():
                rows.append({"job": job.name, **json.loads(result.read_text())})
        (sweep_dir / "summary.json").write_text(json.dumps(rows, indent=2))
        failed = [row for row in rows if row.get("failed")]
        print(f"\nSweep summary ({len(rows)} jobs, {sweep_dir / 'summary.json'}):")
        for row in rows:
            if row.get("failed"):
                print(f"  job {row['job']}: FAILED  {row['error']}")
                continue
            miou = row.get("metrics", {}).get("val/mIoU")
            shown = f"{miou:.4f}" if isinstance(miou, float) else "n/a"
            print(f"  job {row['job']}: val/mIoU {shown}  {' '.join(row.get('overrides', []))}")
        if failed:
            print(f"{len(failed)} of {len(rows)} jobs failed", file=sys.stderr)
            sys.exit(USER_ERROR_EXIT)
