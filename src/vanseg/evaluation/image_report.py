"""``eval.py report=true``: per-image scores while evaluating, then the report files on rank 0.

`ImageRecorder` is the loop's ``on_image`` hook: it scores every image from its own confusion
matrix (`score_image`; the dataset metric is not touched) and offers it to the bounded worst-k
heap (`WorstImages`), which writes panels as the evaluation goes. After the rows of all ranks
are gathered, `write_image_report` writes ``per_image.csv``, keeps the global k worst panels in
``worst/`` (`select_worst`, `prune_panels`), draws ``per_class_iou.png`` and writes
``report.html``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vanseg.errors import ConfigError
from vanseg.evaluation.charts import save_class_chart
from vanseg.evaluation.metrics import confusion_matrix
from vanseg.evaluation.panels import render_panel
from vanseg.evaluation.per_image import ImageScore, per_image_csv, score_image
from vanseg.evaluation.report import EvalResult, per_class_rows, summary
from vanseg.evaluation.report_html import CLASS_CHART, report_page
from vanseg.evaluation.worst import WORST_DIR, WorstImages, panel_name, prune_panels, select_worst
from vanseg.utils.atomic import write_atomic

__all__ = [
    "REPORT_FILES",
    "ImageRecorder",
    "ReportOptions",
    "write_image_report",
]

#: What ``report=true`` adds to the output folder (refused if present, unless overwrite).
REPORT_FILES = ("per_image.csv", WORST_DIR, CLASS_CHART, "report.html")


@dataclass(frozen=True)
class ReportOptions:
    """The ``report_*`` options of ``conf/eval.yaml``.

    Attributes:
        worst_k: Panels of this many worst images (``report_worst_k``).
        top_pairs: Confused class pairs listed (``report_top_pairs``).
        class_images: Images listed per class where it is worst (``report_class_images``).
        panel_side: Longest side of each of the four pictures of a panel (``report_panel_side``).
    """

    worst_k: int = 24
    top_pairs: int = 20
    class_images: int = 3
    panel_side: int = 320

    def __post_init__(self) -> None:
        limits = {"worst_k": 0, "top_pairs": 0, "class_images": 0, "panel_side": 16}
        for name, low in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"report_{name}={value!r} must be an integer >= {low}")


class ImageRecorder:
    """Scores each evaluated image and keeps this process's worst-k panels.

    Args:
        output: The output folder (panels go to ``output/worst``).
        class_names: One name per class.
        palette: ``(K, 3)`` uint8 class colours.
        ignore_index: Label value of ignored pixels.
        names: Image names in dataset order (``dataset.names``), or None for the index.
        options: `ReportOptions`.
    """

    def __init__(
        self,
        output: Path,
        class_names: Sequence[str],
        palette: np.ndarray,
        ignore_index: int,
        names: Sequence[str] | None,
        options: ReportOptions,
    ) -> None:
        self.class_names = list(class_names)
        self.palette = palette
        self.ignore_index = ignore_index
        self.names = names
        self.options = options
        self.worst = WorstImages(output / WORST_DIR, options.worst_k)
        self.scores: list[ImageScore] = []

    def __call__(self, index: int, image: np.ndarray, label: np.ndarray, mask: torch.Tensor):
        target = torch.from_numpy(label.astype(np.int64)).to(mask.device)
        k = len(self.class_names)
        counts = confusion_matrix(mask, target, k, self.ignore_index, validate=False)
        name = self.names[index] if self.names is not None else str(index)
        score = score_image(counts, index, name)
        self.scores.append(score)

        def render() -> np.ndarray:
            pred = mask.cpu().numpy()
            return render_panel(
                image, pred, label, self.class_names, self.palette, self.ignore_index,
                self.options.panel_side,
            )  # fmt: skip

        self.worst.offer(score, render)


def write_image_report(
    result: EvalResult,
    scores: Sequence[ImageScore],
    info: Mapping[str, Any],
    options: ReportOptions,
) -> list[ImageScore]:
    """Write ``per_image.csv``, prune ``worst/``, draw the chart and write ``report.html``.

    Args:
        result: The evaluation (its ``output`` is the folder).
        scores: Every image's score, from all ranks.
        info: What ``metrics.json`` records besides the numbers (checkpoint, data, ...).
        options: `ReportOptions`.

    Returns:
        The k worst images, worst first.
    """
    out = result.output
    if out is None:
        raise ConfigError("no output folder for the report: pass output=<folder>")
    names = result.class_names
    csv_text = per_image_csv(list(scores), names)
    write_atomic(out / "per_image.csv", lambda p: p.write_text(csv_text))
    worst = select_worst(scores, options.worst_k)
    prune_panels(out / WORST_DIR, [panel_name(s) for s in worst])
    rows = per_class_rows(result)
    iou = [r["IoU"] for r in rows]
    write_atomic(out / CLASS_CHART, lambda p: save_class_chart(names, iou, p))
    text = report_page(
        summary=summary(result),
        info={**info, "protocol_text": result.protocol.describe()},
        num_images=result.num_images,
        per_class_rows=rows,
        confmat=result.metrics["confmat"].cpu().numpy(),
        class_names=names,
        worst=worst,
        scores=scores,
        top_pairs=options.top_pairs,
        class_images=options.class_images,
    )
    write_atomic(out / "report.html", lambda p: p.write_text(text, encoding="utf-8"))
    return worst
