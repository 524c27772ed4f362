"""``report.html`` of ``eval.py report=true``: what the model gets wrong, on one offline page.

Sections: the summary and the protocol line; per-class IoU/Acc (sortable table and the bar
chart ``per_class_iou.png``); the most confused class pairs of the dataset confusion matrix and
the heat map ``confusion.png``; the worst-k gallery (``worst/*.png``) with per-image numbers;
for each class, the images where its IoU is lowest.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vanseg.evaluation.html_page import Cell, cell, page, percent_cell, table
from vanseg.evaluation.per_image import ImageScore
from vanseg.evaluation.worst import WORST_DIR, panel_name

__all__ = ["CLASS_CHART", "class_worst_images", "confused_pairs", "report_page"]

#: The per-class IoU bar chart beside report.html.
CLASS_CHART = "per_class_iou.png"


def confused_pairs(confmat: np.ndarray, top: int) -> list[tuple[int, int, int]]:
    """The ``top`` largest off-diagonal cells ``(label, prediction, pixels)``, largest first.

    Ties: lower label, then lower prediction first. Zero cells are left out.
    """
    off = np.asarray(confmat, dtype=np.int64).copy()
    np.fill_diagonal(off, 0)
    cells = [(int(off[i, j]), i, j) for i, j in zip(*np.nonzero(off), strict=True)]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [(i, j, px) for px, i, j in cells[:top]]


def class_worst_images(
    scores: Sequence[ImageScore], num_classes: int, per_class: int
) -> dict[int, list[ImageScore]]:
    """For each class, up to ``per_class`` images with its lowest IoU (ties: lower index)."""
    found: dict[int, list[ImageScore]] = {c: [] for c in range(num_classes)}
    for score in scores:
        for c in score.class_iou:
            found[c].append(score)
    return {
        c: sorted(images, key=lambda s: (s.class_iou[c], s.index))[:per_class]
        for c, images in found.items()
    }


def _confused_text(score: ImageScore, names: Sequence[str]) -> str:
    if score.confused is None:
        return "none"
    label, pred, px = score.confused
    return f"{names[label]} \u2192 {names[pred]} ({px} px)"


def _summary(summary: Mapping[str, float | None], info: Mapping[str, Any], n: int) -> str:
    numbers = "  ".join(f"{k} {'nan' if v is None else f'{v:.2f}'}" for k, v in summary.items())
    data = info.get("data") or {}
    return (
        f'<p class="summary">{html.escape(numbers)} (percent, {n} images)</p>\n'
        f'<p>protocol: <span class="protocol">{html.escape(str(info.get("protocol_text")))}'
        f"</span></p>\n<p>checkpoint: {html.escape(str(info.get('checkpoint')))}<br>"
        f"data: {html.escape(str(data.get('name')))} {html.escape(str(data.get('split')))} "
        f"({html.escape(str(info.get('data_source')))}), eval_seed: {info.get('eval_seed')}, "
        f"processes: {info.get('world_size')}</p>"
    )


def _per_class(rows: Sequence[Mapping[str, Any]]) -> str:
    headers = ["#", "class", "IoU", "Acc", "label pixels", "pred pixels"]
    cells = [
        [
            cell(r["index"]),
            cell(str(r["class"])),
            cell(r["IoU"]),
            cell(r["Acc"]),
            cell(r["label_pixels"]),
            cell(r["pred_pixels"]),
        ]
        for r in rows
    ]
    return (
        "<h2>Per-class IoU and Acc</h2>\n<p>Click a column header to sort.</p>\n"
        + table(headers, cells, table_id="per-class", text_columns=(1,))
        + f'\n<p><img class="plot" src="{CLASS_CHART}" alt="per-class IoU"></p>'
    )


def _confusion(confmat: np.ndarray, names: Sequence[str], top: int) -> str:
    totals = confmat.sum(axis=1)
    rows: list[list[Cell]] = [
        [cell(names[i]), cell(names[j]), cell(px), percent_cell(px / totals[i])]
        for i, j, px in confused_pairs(confmat, top)
    ]
    headers = ["label", "predicted as", "pixels", "% of the label's pixels"]
    return (
        f"<h2>Most confused pairs (top {top})</h2>\n"
        + table(headers, rows, table_id="confused", text_columns=(0, 1))
        + '\n<p><img class="plot" src="confusion.png" alt="confusion matrix"></p>'
    )


def _gallery(worst: Sequence[ImageScore], names: Sequence[str]) -> str:
    figures = []
    for rank, s in enumerate(worst, start=1):
        caption = (
            f"#{rank} {s.name} (index {s.index}): mIoU {100 * s.miou:.2f}, aAcc "
            f"{100 * s.aacc:.2f}, {s.pixels} px, most confused: {_confused_text(s, names)}"
        )
        src = f"{WORST_DIR}/{panel_name(s)}"
        figures.append(
            f'<figure><img src="{html.escape(src)}" alt="{html.escape(s.name)}" loading="lazy">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    body = "\n".join(figures) or "<p>No ranked images.</p>"
    return (
        f"<h2>The {len(worst)} worst images by per-image mIoU</h2>\n<p>Panels: image | "
        "prediction | ground truth | errors (red; black = ignored).</p>\n"
        f'<div class="gallery">\n{body}\n</div>'
    )


def _per_class_worst(
    by_class: Mapping[int, Sequence[ImageScore]], names: Sequence[str], shown: set[int]
) -> str:
    lines = []
    for c, images in by_class.items():
        parts = []
        for s in images:
            text = html.escape(f"{s.name} ({100 * s.class_iou[c]:.2f})")
            if s.index in shown:
                text = f'<a href="{WORST_DIR}/{html.escape(panel_name(s))}">{text}</a>'
            parts.append(text)
        lines.append(
            f'<tr><td>{c}</td><td class="text">{html.escape(names[c])}</td>'
            f'<td class="text">{", ".join(parts) or "-"}</td></tr>'
        )
    return (
        "<h2>Where each class is worst</h2>\n<p>Per class, the images with its lowest IoU "
        "(percent) among those where it is in the label or the prediction; linked names have "
        'a panel above.</p>\n<table><thead><tr><th>#</th><th class="text">class</th>'
        '<th class="text">images (IoU)</th></tr></thead>\n<tbody>\n'
        + "\n".join(lines)
        + "\n</tbody></table>"
    )


def report_page(
    *,
    summary: Mapping[str, float | None],
    info: Mapping[str, Any],
    num_images: int,
    per_class_rows: Sequence[Mapping[str, Any]],
    confmat: np.ndarray,
    class_names: Sequence[str],
    worst: Sequence[ImageScore],
    scores: Sequence[ImageScore],
    top_pairs: int,
    class_images: int,
) -> str:
    """The whole ``report.html`` text."""
    by_class = class_worst_images(scores, len(class_names), class_images)
    shown = {s.index for s in worst}
    return page(
        "Evaluation report",
        [
            _summary(summary, info, num_images),
            _per_class(per_class_rows),
            _confusion(confmat, class_names, top_pairs),
            _gallery(worst, class_names),
            _per_class_worst(by_class, class_names, shown),
        ],
    )
