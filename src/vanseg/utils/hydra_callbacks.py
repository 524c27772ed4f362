"""Hydra callbacks: a summary of every job's final metrics at the end of a multirun."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

__all__ = ["SweepSummary", "RESULT_FILE"]

#: Written by every training job into its output folder (see vanseg.tasks).
RESULT_FILE = "results.json"


class SweepSummary(Callback):
    """After a multirun, writes ``summary.json`` and prints one line per job."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = []
        for result in sorted(sweep_dir.glob(f"*/{RESULT_FILE}"), key=lambda p: p.parent.name):
            data = json.loads(result.read_text())
            rows.append({"job": result.parent.name, **data})
        (sweep_dir / "summary.json").write_text(json.dumps(rows, indent=2))
        print(f"\nSweep summary ({len(rows)} jobs, {sweep_dir / 'summary.json'}):")
        for row in rows:
            miou = row.get("metrics", {}).get("val/mIoU")
            shown = f"{miou:.4f}" if isinstance(miou, float) else "n/a"
            print(f"  job {row['job']}: val/mIoU {shown}  {' '.join(row.get('overrides', []))}")
