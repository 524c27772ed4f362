"""Report an evaluation: a rich table on the console, and metrics.json, CSV, .npy and PNG files.

Every file is written atomically (a temporary file in the same folder, then a rename), and an
output folder that already holds results is refused unless ``overwrite`` is given.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from vanseg.errors import OutputExistsError
from vanseg.evaluation.charts import save_confusion_png
from vanseg.evaluation.metrics import round_results
from vanseg.inference.protocol import InferenceProtocol
from vanseg.utils.atomic import refuse_existing, write_atomic

__all__ = [
    "RESULT_FILES",
    "EvalResult",
    "check_output",
    "per_class_rows",
    "print_results",
    "summary",
    "write_results",
]

#: Files an evaluation writes; an output folder holding any of them is not overwritten silently.
RESULT_FILES = ("metrics.json", "per_class.csv", "confusion.npy", "confusion.png")


@dataclass
class EvalResult:
    """What an evaluation produced (the same on every rank).

    ``metrics`` holds the unrounded fractions of `metrics_from_confusion` (``mIoU``, ``mAcc``,
    ``aAcc``, per-class ``IoU``/``Acc`` tensors and ``confmat``).
    """

    metrics: dict[str, Any]
    protocol: InferenceProtocol
    num_images: int
    class_names: list[str]
    output: Path | None


def check_output(output: Path, overwrite: bool, files: tuple[str, ...] = RESULT_FILES) -> None:
    """Refuse an output folder that already holds results, unless ``overwrite``."""
    refuse_existing([output / name for name in files], overwrite, instead="another output=<folder>")


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def per_class_rows(result: EvalResult) -> list[dict[str, Any]]:
    """One row per class: index, name, IoU and Acc in percent (rounded as mmseg), pixel counts."""
    rounded = round_results(result.metrics)
    confmat = result.metrics["confmat"].cpu()
    label_px, pred_px = confmat.sum(dim=1).tolist(), confmat.sum(dim=0).tolist()
    return [
        {
            "index": i,
            "class": name,
            "IoU": _nan_to_none(rounded["IoU"][i]),
            "Acc": _nan_to_none(rounded["Acc"][i]),
            "label_pixels": label_px[i],
            "pred_pixels": pred_px[i],
        }
        for i, name in enumerate(result.class_names)
    ]


def summary(result: EvalResult) -> dict[str, float | None]:
    """``mIoU``, ``mAcc``, ``aAcc`` in percent, rounded to 2 decimals as mmseg prints them."""
    rounded = round_results(result.metrics)
    return {key: _nan_to_none(rounded[key]) for key in ("mIoU", "mAcc", "aAcc")}


def print_results(result: EvalResult, info: Mapping[str, Any]) -> None:
    """The per-class table, the summary and the protocol, with rich."""
    console = Console(soft_wrap=True)  # long lines (protocol, paths) stay whole in logs
    table = Table(title=f"Per-class results ({result.num_images} images)")
    table.add_column("#", justify="right")
    table.add_column("class")
    table.add_column("IoU", justify="right")
    table.add_column("Acc", justify="right")
    for row in per_class_rows(result):
        iou, acc = (f"{v:.2f}" if v is not None else "nan" for v in (row["IoU"], row["Acc"]))
        table.add_row(str(row["index"]), row["class"], iou, acc)
    console.print(table)
    numbers = summary(result)
    shown = "  ".join(f"{k} {'nan' if v is None else f'{v:.2f}'}" for k, v in numbers.items())
    console.print(f"[bold]{shown}[/]  (percent)")
    console.print(f"protocol: {result.protocol.describe()}", markup=False)
    console.print(
        f"checkpoint: {info['checkpoint']}  |  data: {info['data']['name']} "
        f"{info['data']['split']} ({info['data_source']})  |  eval_seed: {info['eval_seed']}",
        markup=False,
    )
    if result.output is not None:
        console.print(f"results: {result.output}", markup=False)


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "nan" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


def write_results(result: EvalResult, info: Mapping[str, Any]) -> Path:
    """Write ``metrics.json``, ``per_class.csv``, ``confusion.npy`` and ``confusion.png``."""
    if result.output is None:
        raise OutputExistsError("no output folder to write the results to: pass output=<folder>")
    out = result.output
    rows = per_class_rows(result)
    confmat = result.metrics["confmat"].cpu().numpy().astype(np.int64)
    document = {
        "units": "summary and per_class IoU/Acc: percent, rounded to 2 decimals as mmseg "
        "prints them; summary_fractions: unrounded fractions",
        "summary": summary(result),
        "summary_fractions": {
            key: _nan_to_none(float(result.metrics[key])) for key in ("mIoU", "mAcc", "aAcc")
        },
        "num_images": result.num_images,
        "protocol_text": result.protocol.describe(),
        "protocol": result.protocol.to_dict(),
        **info,
        "per_class": rows,
    }
    text = json.dumps(document, indent=2) + "\n"
    write_atomic(out / "metrics.json", lambda p: p.write_text(text))
    table = _csv_text(rows)
    write_atomic(out / "per_class.csv", lambda p: p.write_text(table))
    write_atomic(out / "confusion.npy", lambda p: np.save(p, confmat))
    write_atomic(
        out / "confusion.png", lambda p: save_confusion_png(confmat, p, result.class_names)
    )
    return out
